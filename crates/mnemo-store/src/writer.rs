//! The single writer: one thread owns every write transaction and commits
//! whatever has queued up while the previous commit was being made durable
//! (group commit). A write is acknowledged only after the commit that holds
//! it returned, so N concurrent writers cost one fsync per batch, not N.
//!
//! Two kinds of writes go through here, with the same rules underneath
//! (see [`crate::set`]): a client's write taken by this node, which may be
//! refused (an id already used for other content, an id forgotten), and a
//! merge of elements from another holder, which never refuses a valid
//! element: it applies the merge rules and counts conflicts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use prost::Message;
use redb::{ReadableTable, Table};
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::memory::{Consolidation, Memory, Op};
use crate::set::{Element, incoming_wins, memory_element, version};
use crate::space::{Effect, Shared};
use crate::tables::{MEMORIES, TOMBSTONES};

/// Most writes committed together.
const MAX_BATCH: usize = 2048;

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

pub(crate) fn run(shared: &Arc<Shared>, jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_batch(shared, batch);
    }
}

fn commit_batch(shared: &Arc<Shared>, batch: Vec<Job>) {
    let mut effects: Vec<(String, Effect)> = Vec::new();
    let mut results: Vec<Result<Reply>> = Vec::with_capacity(batch.len());
    // Per space this batch has touched, its dimension so far.
    let mut dims: HashMap<String, usize> = HashMap::new();

    let committed = (|| -> Result<()> {
        let txn = shared.db.begin_write()?;
        {
            let mut t = Tables {
                memories: txn.open_table(MEMORIES)?,
                tombstones: txn.open_table(TOMBSTONES)?,
            };
            for job in &batch {
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
        }
        txn.commit()?;
        Ok(())
    })();

    match committed {
        Ok(()) => {
            shared.publish(effects);
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.len(), "write batch failed; nothing was committed");
            let message = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Storage(redb::Error::Io(
                    std::io::Error::other(message.clone()),
                ))));
            }
        }
    }
}

struct Tables<'txn> {
    memories: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    tombstones: Table<'txn, (&'static str, &'static str), u64>,
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
        t.memories.insert((self.space, m.id.as_str()), encoded)?;
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
        t.tombstones.insert(key, crate::store::now_ms() as u64)?;
        let existed = t.memories.remove(key)?.is_some();
        self.effects
            .push((self.space.into(), Effect::Tombstone(id.into())));
        Ok((true, existed))
    }

    fn drop_space(&mut self, t: &mut Tables<'_>) -> Result<()> {
        remove_space_rows(&mut t.memories, self.space)?;
        remove_space_rows(&mut t.tombstones, self.space)?;
        self.effects.push((self.space.into(), Effect::Drop));
        Ok(())
    }
}
