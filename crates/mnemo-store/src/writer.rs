//! The single writer: one thread owns every write transaction and commits
//! whatever has queued up while the previous commit was being made durable
//! (group commit). A write is acknowledged only after the commit that holds
//! it returned, so N concurrent writers cost one fsync per batch, not N.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use prost::Message;
use redb::{Database, ReadableTable, Table};
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::memory::{Consolidation, LogEntry, Memory, Op};
use crate::store::{LOG, MEMORIES, SPACES, Shared, TOMBSTONES};

/// Most writes committed together.
const MAX_BATCH: usize = 2048;

/// What a write asks for.
pub(crate) enum Request {
    /// A write accepted by this node as the space's primary: it gets the
    /// space's next sequence number.
    Local(Op),
    /// Entries already ordered by the primary, applied in order by a replica.
    Replicated(Vec<LogEntry>),
}

pub(crate) struct Job {
    pub(crate) space: String,
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Result<Outcome>>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The space's log position after the write.
    pub seq: u64,
    /// False when the write was already applied (an idempotent replay) or
    /// changed nothing (forgetting what was already forgotten).
    pub changed: bool,
    /// For a forget: whether a live memory was removed.
    pub existed: bool,
}

/// How a committed batch changes the in-memory index.
enum Effect {
    Insert(Arc<Memory>),
    Remove(String),
}

#[derive(Clone, Copy)]
struct Meta {
    seq: u64,
    dim: u32,
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
    let mut metas: HashMap<String, Meta> = HashMap::new();
    let mut effects: Vec<(String, Effect)> = Vec::new();
    let mut results: Vec<Result<Outcome>> = Vec::with_capacity(batch.len());

    let committed = (|| -> Result<()> {
        let txn = shared.db.begin_write()?;
        {
            let mut t = Tables {
                memories: txn.open_table(MEMORIES)?,
                tombstones: txn.open_table(TOMBSTONES)?,
                log: txn.open_table(LOG)?,
                spaces: txn.open_table(SPACES)?,
            };
            for job in &batch {
                let meta = match metas.get(&job.space) {
                    Some(m) => *m,
                    None => t.meta(&job.space)?,
                };
                let mut ctx = Ctx {
                    space: &job.space,
                    meta,
                    effects: &mut effects,
                };
                let result = match &job.request {
                    Request::Local(op) => ctx.local(&mut t, op),
                    Request::Replicated(entries) => ctx.replicated(&mut t, entries),
                };
                // A storage error aborts the whole batch; refusals are per job.
                if let Err(StoreError::Storage(e)) = result {
                    return Err(StoreError::Storage(e));
                }
                let meta = ctx.meta;
                t.spaces.insert(job.space.as_str(), (meta.seq, meta.dim))?;
                metas.insert(job.space.clone(), meta);
                results.push(result);
            }
        }
        txn.commit()?;
        Ok(())
    })();

    match committed {
        Ok(()) => {
            shared.publish(&metas, effects);
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
    log: Table<'txn, (&'static str, u64), &'static [u8]>,
    spaces: Table<'txn, &'static str, (u64, u32)>,
}

impl Tables<'_> {
    fn meta(&self, space: &str) -> Result<Meta> {
        Ok(match self.spaces.get(space)? {
            Some(v) => {
                let (seq, dim) = v.value();
                Meta { seq, dim }
            }
            None => Meta { seq: 0, dim: 0 },
        })
    }
}

struct Ctx<'a> {
    space: &'a str,
    meta: Meta,
    effects: &'a mut Vec<(String, Effect)>,
}

impl Ctx<'_> {
    /// A primary's write: refusals are returned to the client.
    fn local(&mut self, t: &mut Tables<'_>, op: &Op) -> Result<Outcome> {
        let seq = self.meta.seq + 1;
        let outcome = self.apply(t, op, seq)?;
        if outcome.changed {
            self.meta.seq = seq;
            let entry = LogEntry {
                seq,
                op: Some(op.clone()),
            };
            t.log
                .insert((self.space, seq), entry.encode_to_vec().as_slice())?;
        }
        Ok(Outcome {
            seq: self.meta.seq,
            ..outcome
        })
    }

    /// A replica's apply: the primary already decided, so a refusal here (a
    /// memory the replica already has) is a no-op; the position advances.
    fn replicated(&mut self, t: &mut Tables<'_>, entries: &[LogEntry]) -> Result<Outcome> {
        let mut changed = false;
        for entry in entries {
            if entry.seq <= self.meta.seq {
                continue;
            }
            if entry.seq != self.meta.seq + 1 {
                return Err(StoreError::invalid(
                    "entries",
                    format!(
                        "start at seq {} but space {:?} has applied up to {}",
                        entry.seq, self.space, self.meta.seq
                    ),
                ));
            }
            if let Some(op) = &entry.op {
                match self.apply(t, op, entry.seq) {
                    Ok(o) => changed |= o.changed,
                    Err(StoreError::Storage(e)) => return Err(StoreError::Storage(e)),
                    Err(refused) => {
                        tracing::debug!(space = self.space, seq = entry.seq, %refused, "replicated entry was a no-op");
                    }
                }
            }
            self.meta.seq = entry.seq;
            t.log
                .insert((self.space, entry.seq), entry.encode_to_vec().as_slice())?;
        }
        Ok(Outcome {
            seq: self.meta.seq,
            changed,
            existed: false,
        })
    }

    fn apply(&mut self, t: &mut Tables<'_>, op: &Op, seq: u64) -> Result<Outcome> {
        match op {
            Op::Remember(m) => self.remember(t, m),
            Op::Forget(id) => {
                let existed = self.tombstone(t, id, seq)?;
                Ok(Outcome {
                    seq,
                    changed: existed.is_some(),
                    existed: existed == Some(true),
                })
            }
            Op::Consolidate(Consolidation { merged, inputs }) => {
                let merged = merged
                    .as_ref()
                    .ok_or_else(|| StoreError::invalid("merged", "is missing"))?;
                let mut changed = match self.remember(t, merged) {
                    Ok(o) => o.changed,
                    Err(StoreError::AlreadyExists { .. } | StoreError::Forgotten { .. }) => false,
                    Err(e) => return Err(e),
                };
                for id in inputs {
                    changed |= self.tombstone(t, id, seq)?.is_some();
                }
                Ok(Outcome {
                    seq,
                    changed,
                    existed: false,
                })
            }
        }
    }

    fn remember(&mut self, t: &mut Tables<'_>, m: &Memory) -> Result<Outcome> {
        let key = (self.space, m.id.as_str());
        if t.tombstones.get(key)?.is_some() {
            return Err(StoreError::Forgotten {
                space: self.space.into(),
                id: m.id.clone(),
            });
        }
        if let Some(existing) = t.memories.get(key)? {
            let existing = Memory::decode(existing.value())
                .map_err(|e| StoreError::Storage(redb::Error::Corrupted(e.to_string())))?;
            if existing.same_as(m) {
                return Ok(Outcome {
                    seq: self.meta.seq,
                    changed: false,
                    existed: true,
                });
            }
            return Err(StoreError::AlreadyExists {
                space: self.space.into(),
                id: m.id.clone(),
            });
        }
        let dim = m.embedding.len() as u32;
        if self.meta.dim == 0 {
            self.meta.dim = dim;
        } else if self.meta.dim != dim {
            return Err(StoreError::invalid(
                "embedding",
                format!(
                    "has {dim} dimensions but space {:?} uses {}",
                    self.space, self.meta.dim
                ),
            ));
        }
        t.memories.insert(key, m.encode_to_vec().as_slice())?;
        self.effects
            .push((self.space.into(), Effect::Insert(Arc::new(m.clone()))));
        Ok(Outcome {
            seq: self.meta.seq,
            changed: true,
            existed: false,
        })
    }

    /// Tombstones `id`. `None`: it already was; `Some(existed)`: whether a
    /// live memory was removed.
    fn tombstone(&mut self, t: &mut Tables<'_>, id: &str, seq: u64) -> Result<Option<bool>> {
        let key = (self.space, id);
        if t.tombstones.get(key)?.is_some() {
            return Ok(None);
        }
        t.tombstones.insert(key, seq)?;
        let existed = t.memories.remove(key)?.is_some();
        if existed {
            self.effects
                .push((self.space.into(), Effect::Remove(id.into())));
        }
        Ok(Some(existed))
    }
}

impl Shared {
    /// Makes a committed batch visible to recall.
    fn publish(&self, metas: &HashMap<String, Meta>, effects: Vec<(String, Effect)>) {
        for (space, meta) in metas {
            let s = self.space_or_create(space);
            s.seq.store(meta.seq, std::sync::atomic::Ordering::Release);
            let mut ix = s.index.write().expect("index lock poisoned");
            if ix.dim() == 0 {
                ix.set_dim(meta.dim as usize);
            }
        }
        for (space, effect) in effects {
            let s = self.space_or_create(&space);
            let mut ix = s.index.write().expect("index lock poisoned");
            match effect {
                Effect::Insert(m) => ix.insert(m),
                Effect::Remove(id) => {
                    ix.remove(&id);
                }
            }
        }
    }
}

/// Opens (creating if needed) every table, so readers never find one missing.
pub(crate) fn create_tables(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    txn.open_table(MEMORIES)?;
    txn.open_table(TOMBSTONES)?;
    txn.open_table(LOG)?;
    txn.open_table(SPACES)?;
    txn.commit()?;
    Ok(())
}
