//! The single writer: one thread owns every write transaction and commits
//! whatever has queued up while the previous batch was being made durable
//! (group commit). A batch is applied to redb with a non-durable commit and
//! written to the log as one record ([`crate::wal`]); its writes are
//! acknowledged once that record is synced, so N concurrent writers share
//! one small sequential write and one `fdatasync`. Now and then, and
//! whenever the queue is idle, a checkpoint makes redb durable and empties
//! the log.
//!
//! Two kinds of writes go through here, with the same rules underneath
//! (see [`crate::set`]): a client's write taken by this node, which may be
//! refused (an id already used for other content, an id forgotten), and a
//! merge of elements from another holder, which never refuses a valid
//! element: it applies the merge rules and counts conflicts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use prost::Message;
use redb::{ReadableTable, Table};
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::memory::{Consolidation, Memory, Op};
use crate::set::{Element, incoming_wins, memory_element, version};
use crate::space::{Effect, Shared};
use crate::tables::{MEMORIES, TOMBSTONES};
use crate::wal::{Change, PutMemory, PutTombstone, Record, Wal, Write};

/// Most writes committed together.
const MAX_BATCH: usize = 2048;

/// How long the queue stays empty before a checkpoint.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// What a write asks for.
pub(crate) enum Request {
    /// A client's write taken by this node.
    Local(Op),
    /// Elements from another holder, merged.
    Merge(Vec<Element>),
    /// Remove every trace of the space from this node, if its digest is
    /// still this one (nothing arrived since the caller last looked).
    Drop { if_digest: u128 },
}

/// What a write did.
pub(crate) enum Reply {
    Written(Written),
    Merged(Merged),
    /// Whether the space was dropped (its digest had not changed).
    Dropped(bool),
}

pub(crate) struct Job {
    pub(crate) space: String,
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Result<Reply>>,
}

/// What a client's write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// False when the write was already applied (an idempotent replay) or
    /// changed nothing (forgetting what was already forgotten).
    pub changed: bool,
    /// For a forget: whether a live memory was removed.
    pub existed: bool,
    /// The elements the write stands for, as stored, to send to the other
    /// holders (a replay sends them again: the first send may have failed).
    pub elements: Vec<Element>,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Elements that changed this holder's state.
    pub applied: u32,
    /// Elements it already had, or that lost to what it had.
    pub unchanged: u32,
    /// Two different memories under one id met (either side may have won).
    pub conflicts: u32,
    /// Elements refused as invalid: (memory id, why). The rest were applied.
    pub refused: Vec<(String, String)>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    wal: Wal,
    /// A checkpoint is made once the log holds this many bytes.
    checkpoint_bytes: u64,
    /// Set when the log could not be written: redb then holds a batch the
    /// log does not, so no further write is taken until a restart replays
    /// the log (reads go on from what was published).
    failed: Option<String>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, wal: Wal, checkpoint_bytes: u64) -> Self {
        Writer {
            shared,
            wal,
            checkpoint_bytes,
            failed: None,
        }
    }

    pub(crate) fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            let first = match jobs.recv_timeout(IDLE_CHECKPOINT) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.checkpoint();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit_batch(batch);
            if self.wal.len() >= self.checkpoint_bytes {
                self.checkpoint();
            }
        }
        self.checkpoint();
    }

    /// Makes redb durable up to the last batch and empties the log.
    fn checkpoint(&mut self) {
        if self.wal.len() == 0 || self.failed.is_some() {
            return;
        }
        let durable = (|| -> Result<()> {
            // A durable commit persists every non-durable one before it.
            self.shared.db.begin_write()?.commit()?;
            self.wal.reset()?;
            Ok(())
        })();
        match durable {
            Ok(()) => metrics::counter!("mnemo_store_checkpoints_total").increment(1),
            // The log still holds everything: the next checkpoint (or a
            // restart's replay) covers it.
            Err(e) => tracing::error!(error = %e, "checkpoint failed; the log keeps its records"),
        }
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        if let Some(why) = &self.failed {
            for job in batch {
                let _ = job.reply.send(Err(failed(why)));
            }
            return;
        }
        match self.apply(&batch) {
            Ok((results, effects)) => {
                self.shared.publish(effects);
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "write batch failed; none of it was acknowledged");
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(failed(&message)));
                }
            }
        }
    }

    /// Applies a batch to redb (non-durably) and logs it. Returns each
    /// job's answer and what becomes visible once they are sent.
    #[allow(clippy::type_complexity)]
    fn apply(&mut self, batch: &[Job]) -> Result<(Vec<Result<Reply>>, Vec<(String, Effect)>)> {
        let shared = &self.shared;
        let mut effects: Vec<(String, Effect)> = Vec::new();
        let mut results: Vec<Result<Reply>> = Vec::with_capacity(batch.len());
        // Per space this batch has touched, its dimension so far.
        let mut dims: HashMap<String, usize> = HashMap::new();

        let mut txn = shared.db.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| {
            StoreError::Storage(redb::Error::Io(std::io::Error::other(e.to_string())))
        })?;
        let mut t = Tables::open(&txn)?;
        for job in batch {
            // The published digest is current only for a space this
            // batch has not touched yet: a drop after a write in the
            // same batch does not happen.
            let untouched = !dims.contains_key(&job.space);
            let dim = *dims.entry(job.space.clone()).or_insert_with(|| {
                shared
                    .space(&job.space)
                    .map_or(0, |s| s.index.read().expect("lock poisoned").dim())
            });
            let mut ctx = Ctx {
                space: &job.space,
                dim,
                effects: &mut effects,
            };
            let result = match &job.request {
                Request::Local(op) => ctx.local(&mut t, op).map(Reply::Written),
                Request::Merge(elements) => ctx.merge(&mut t, elements).map(Reply::Merged),
                Request::Drop { if_digest } => {
                    let now = shared
                        .space(&job.space)
                        .map(|s| s.set.read().expect("lock poisoned").digest());
                    if now == Some(*if_digest) && untouched {
                        ctx.drop_space(&mut t).map(|()| Reply::Dropped(true))
                    } else {
                        Ok(Reply::Dropped(false))
                    }
                }
            };
            // A storage error aborts the whole batch; refusals are per job.
            if let Err(StoreError::Storage(e)) = result {
                return Err(StoreError::Storage(e));
            }
            let dim = if matches!(job.request, Request::Drop { .. }) {
                0
            } else {
                ctx.dim
            };
            dims.insert(job.space.clone(), dim);
            results.push(result);
        }
        let changes = std::mem::take(&mut t.changes);
        drop(t);
        txn.commit()?;
        if changes.is_empty() {
            // Only refusals and no-ops: nothing to make durable.
            return Ok((results, effects));
        }
        if let Err(e) = self.wal.append(&Record { changes }) {
            let why = format!("the write-ahead log could not be written: {e}");
            tracing::error!("{why}; this node takes no more writes until it restarts");
            self.failed = Some(why.clone());
            return Err(failed(&why));
        }
        Ok((results, effects))
    }
}

fn failed(why: &str) -> StoreError {
    StoreError::Storage(redb::Error::Io(std::io::Error::other(why.to_owned())))
}

/// Applies logged records to redb with one durable commit (start-up replay).
pub(crate) fn replay(db: &redb::Database, records: &[Record]) -> Result<usize> {
    let txn = db.begin_write()?;
    let mut changes = 0;
    {
        let mut t = Tables::open(&txn)?;
        for change in records.iter().flat_map(|r| &r.changes) {
            t.apply(change)?;
            changes += 1;
        }
    }
    txn.commit()?;
    Ok(changes)
}

/// The tables of one write transaction, recording every change made
/// through them for the log.
struct Tables<'txn> {
    memories: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    tombstones: Table<'txn, (&'static str, &'static str), u64>,
    changes: Vec<Change>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self> {
        Ok(Tables {
            memories: txn.open_table(MEMORIES)?,
            tombstones: txn.open_table(TOMBSTONES)?,
            changes: Vec::new(),
        })
    }

    fn log(&mut self, space: &str, write: Write) {
        self.changes.push(Change {
            space: space.to_owned(),
            write: Some(write),
        });
    }

    fn put_memory(&mut self, space: &str, id: &str, bytes: &[u8]) -> Result<()> {
        self.memories.insert((space, id), bytes)?;
        self.log(
            space,
            Write::PutMemory(PutMemory {
                id: id.to_owned(),
                bytes: bytes.to_vec(),
            }),
        );
        Ok(())
    }

    fn put_tombstone(&mut self, space: &str, id: &str, at_ms: u64) -> Result<()> {
        self.tombstones.insert((space, id), at_ms)?;
        self.log(
            space,
            Write::PutTombstone(PutTombstone {
                id: id.to_owned(),
                at_ms,
            }),
        );
        Ok(())
    }

    /// Removes the id's memory row; returns whether there was one.
    fn remove_memory(&mut self, space: &str, id: &str) -> Result<bool> {
        let existed = self.memories.remove((space, id))?.is_some();
        if existed {
            self.log(space, Write::RemoveMemory(id.to_owned()));
        }
        Ok(existed)
    }

    fn drop_space(&mut self, space: &str) -> Result<()> {
        remove_space_rows(&mut self.memories, space)?;
        remove_space_rows(&mut self.tombstones, space)?;
        self.log(space, Write::DropSpace(true));
        Ok(())
    }

    /// Applies one logged change.
    fn apply(&mut self, change: &Change) -> Result<()> {
        let space = change.space.as_str();
        match &change.write {
            Some(Write::PutMemory(p)) => self.put_memory(space, &p.id, &p.bytes),
            Some(Write::PutTombstone(p)) => self.put_tombstone(space, &p.id, p.at_ms),
            Some(Write::RemoveMemory(id)) => self.remove_memory(space, id).map(drop),
            Some(Write::DropSpace(_)) => self.drop_space(space),
            None => Err(StoreError::Storage(redb::Error::Corrupted(
                "a write-ahead log change without a write".into(),
            ))),
        }
    }
}

struct Ctx<'a> {
    space: &'a str,
    /// The space's embedding dimension (0 while no memory fixed it).
    dim: usize,
    effects: &'a mut Vec<(String, Effect)>,
}

/// What storing one memory did.
enum Stored {
    New,
    /// The same memory was there (perhaps stamped at another time): the
    /// stored one.
    Same(Memory),
    /// Another memory holds the id; `replaced` when the incoming one won.
    Conflict {
        replaced: bool,
    },
    Forgotten,
}

/// Removes every row of `space` from a table keyed by (space, id).
fn remove_space_rows<V: redb::Value + 'static>(
    table: &mut Table<'_, (&'static str, &'static str), V>,
    space: &str,
) -> Result<()> {
    table.retain_in((space, "")..(space, "\u{10ffff}"), |_, _| false)?;
    Ok(())
}

impl Ctx<'_> {
    /// A client's write: refusals go back to the client.
    fn local(&mut self, t: &mut Tables<'_>, op: &Op) -> Result<Written> {
        match op {
            Op::Remember(m) => match self.store_memory(t, m, false)? {
                Stored::New => Ok(Written {
                    changed: true,
                    existed: false,
                    elements: vec![Element::Memory(m.clone())],
                }),
                Stored::Same(stored) => Ok(Written {
                    changed: false,
                    existed: true,
                    elements: vec![Element::Memory(stored)],
                }),
                Stored::Conflict { .. } => Err(StoreError::AlreadyExists {
                    space: self.space.into(),
                    id: m.id.clone(),
                }),
                Stored::Forgotten => Err(StoreError::Forgotten {
                    space: self.space.into(),
                    id: m.id.clone(),
                }),
            },
            Op::Forget(id) => {
                let (changed, existed) = self.tombstone(t, id)?;
                Ok(Written {
                    changed,
                    existed,
                    elements: vec![Element::Tombstone(id.clone())],
                })
            }
            Op::Consolidate(Consolidation { merged, inputs }) => {
                let merged = merged
                    .as_ref()
                    .ok_or_else(|| StoreError::invalid("merged", "is missing"))?;
                crate::validate::memory(self.space, merged)?;
                let mut elements = Vec::with_capacity(inputs.len() + 1);
                let mut changed = match self.store_memory(t, merged, false)? {
                    Stored::New => {
                        elements.push(Element::Memory(merged.clone()));
                        true
                    }
                    Stored::Same(stored) => {
                        elements.push(Element::Memory(stored));
                        false
                    }
                    Stored::Conflict { .. } | Stored::Forgotten => false,
                };
                for id in inputs {
                    changed |= self.tombstone(t, id)?.0;
                    elements.push(Element::Tombstone(id.clone()));
                }
                Ok(Written {
                    changed,
                    existed: false,
                    elements,
                })
            }
        }
    }

    /// Elements from another holder: each valid one is merged, each invalid
    /// one refused on its own.
    fn merge(&mut self, t: &mut Tables<'_>, elements: &[Element]) -> Result<Merged> {
        let mut out = Merged::default();
        for element in elements {
            let checked = match element {
                Element::Memory(m) => crate::validate::stored_memory(self.space, m, self.dim),
                Element::Tombstone(id) => crate::validate::id(id),
            };
            if let Err(e) = checked {
                out.refused.push((element.id().to_owned(), e.to_string()));
                continue;
            }
            let applied = match element {
                Element::Memory(m) => match self.store_memory(t, m, true)? {
                    Stored::New => true,
                    Stored::Same(_) | Stored::Forgotten => false,
                    Stored::Conflict { replaced } => {
                        out.conflicts += 1;
                        replaced
                    }
                },
                Element::Tombstone(id) => self.tombstone(t, id)?.0,
            };
            if applied {
                out.applied += 1;
            } else {
                out.unchanged += 1;
            }
        }
        if out.conflicts > 0 {
            metrics::counter!("mnemo_store_conflicts_total").increment(u64::from(out.conflicts));
        }
        Ok(out)
    }

    /// Stores `m` unless its id is forgotten or held. `merging`: a held id
    /// with other content resolves by the merge rule instead of refusing.
    fn store_memory(&mut self, t: &mut Tables<'_>, m: &Memory, merging: bool) -> Result<Stored> {
        let key = (self.space, m.id.as_str());
        if t.tombstones.get(key)?.is_some() {
            return Ok(Stored::Forgotten);
        }
        let encoded = m.encode_to_vec();
        let incoming = version(m, &encoded);
        let existing = t.memories.get(key)?.map(|v| v.value().to_vec());
        if let Some(bytes) = existing {
            let stored = Memory::decode(bytes.as_slice())
                .map_err(|e| StoreError::Storage(redb::Error::Corrupted(e.to_string())))?;
            let held = version(&stored, &bytes);
            if held == incoming {
                return Ok(Stored::Same(m.clone()));
            }
            if !merging {
                return Ok(if stored.same_as(m) {
                    Stored::Same(stored)
                } else {
                    Stored::Conflict { replaced: false }
                });
            }
            if !incoming_wins(held, incoming) {
                return Ok(Stored::Conflict { replaced: false });
            }
            self.put(t, m, &encoded, incoming)?;
            return Ok(Stored::Conflict { replaced: true });
        }
        let dim = m.embedding.len();
        if self.dim == 0 {
            self.dim = dim;
        } else if self.dim != dim {
            return Err(StoreError::invalid(
                "embedding",
                format!(
                    "has {dim} dimensions but space {:?} uses {}",
                    self.space, self.dim
                ),
            ));
        }
        self.put(t, m, &encoded, incoming)?;
        Ok(Stored::New)
    }

    fn put(&mut self, t: &mut Tables<'_>, m: &Memory, encoded: &[u8], v: u128) -> Result<()> {
        t.put_memory(self.space, &m.id, encoded)?;
        self.effects.push((
            self.space.into(),
            Effect::Insert(Arc::new(m.clone()), memory_element(&m.id, v)),
        ));
        Ok(())
    }

    /// Tombstones `id`. Returns (whether the tombstone is new, whether a
    /// live memory was removed).
    fn tombstone(&mut self, t: &mut Tables<'_>, id: &str) -> Result<(bool, bool)> {
        let key = (self.space, id);
        if t.tombstones.get(key)?.is_some() {
            return Ok((false, false));
        }
        t.put_tombstone(self.space, id, crate::store::now_ms() as u64)?;
        let existed = t.remove_memory(self.space, id)?;
        self.effects
            .push((self.space.into(), Effect::Tombstone(id.into())));
        Ok((true, existed))
    }

    fn drop_space(&mut self, t: &mut Tables<'_>) -> Result<()> {
        t.drop_space(self.space)?;
        self.effects.push((self.space.into(), Effect::Drop));
        Ok(())
    }
}
