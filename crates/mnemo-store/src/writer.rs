//! The single writer: one thread decides every write and makes it durable.
//!
//! It takes whatever has queued up while the previous batch was being
//! synced (group commit), decides each write against what the node holds
//! (the published in-memory state, plus what earlier writes of the same
//! batch did), writes the batch's changes to the log as one record
//! ([`crate::wal`]), syncs it, then publishes the changes to readers and
//! acknowledges every write in it: N concurrent writers share one small
//! sequential write and one `fdatasync`. The changes then go to the applier
//! ([`crate::applier`]), which brings redb up to date in the background.
//! When the active log file is full, or writes pause, the writer moves to
//! the other file and asks the applier to checkpoint the one it left.
//!
//! Two kinds of writes go through here, with the same rules underneath
//! (see [`crate::set`]): a client's write taken by this node, which may be
//! refused (an id already used for other content, an id forgotten), and a
//! merge of elements from another holder, which never refuses a valid
//! element: it applies the merge rules and counts conflicts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::oneshot;

use crate::applier::{Done, Task};
use crate::decay::with_usage;
use crate::error::{Result, StoreError};
use crate::memory::{Consolidation, Memory, Op};
use crate::set::{Element, incoming_wins, memory_element, same_write, version};
use crate::space::{Effect, Shared};
use crate::wal::{Change, DropSpace, Log, PutMemory, PutTombstone, Record, Write};

/// Most writes committed together.
const MAX_BATCH: usize = 2048;
/// Most bytes of memories committed together (well under the log's record
/// limit; one write may pass it alone).
const MAX_BATCH_BYTES: usize = 64 << 20;

/// How long the queue stays empty before the log moves on to its other
/// file and the one it leaves is checkpointed.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// How long logged changes are gathered before they go to the applier:
/// each redb commit copies the pages it touches once, so the more changes
/// share one, the less each costs (and the applier is woken less often).
/// Nothing reads redb while the node runs, so the lag is not seen.
const GATHER: Duration = Duration::from_millis(20);
/// Or once this many changes are gathered.
const GATHER_CHANGES: usize = 4096;

/// What a write asks for.
pub(crate) enum Request {
    /// A client's write taken by this node.
    Local(Op),
    /// Elements from another holder, merged.
    Merge(Vec<Element>),
    /// Remove every trace of the space from this node, if its digest is
    /// still this one (nothing arrived since the caller last looked).
    Drop { if_digest: u128 },
    /// A recall at `at_ms` returned these memories: record it on each that
    /// is still live here and due a stamp (see [`crate::decay`]). Never
    /// creates anything; answered with `Merged`.
    Stamp { ids: Vec<String>, at_ms: i64 },
    /// Nothing: answered once every job queued before it is published.
    Settle,
}

impl Request {
    /// About how many bytes the write adds to the log.
    fn weight(&self) -> usize {
        let memory = |m: &Memory| {
            m.content.len()
                + m.embedding.len() * 4
                + m.merged_from.iter().map(|i| i.content.len()).sum::<usize>()
                + 64
        };
        match self {
            Request::Local(Op::Remember(m)) => memory(m),
            Request::Local(Op::Consolidate(c)) => {
                c.merged.as_ref().map_or(0, memory) + c.inputs.len() * 64
            }
            Request::Local(Op::Forget(_)) | Request::Drop { .. } => 64,
            Request::Settle => 0,
            Request::Stamp { ids, .. } => ids.len() * 64,
            Request::Merge(elements) => elements
                .iter()
                .map(|e| match e {
                    Element::Memory(m) => memory(m),
                    Element::Tombstone(_) => 64,
                })
                .sum(),
        }
    }
}

/// What a write did.
pub(crate) enum Reply {
    Written(Written),
    Merged(Merged),
    /// Whether the space was dropped (its digest had not changed).
    Dropped(bool),
    /// Every earlier job is published.
    Settled,
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
    log: Log,
    /// The active log file moves on once it holds this many bytes.
    checkpoint_bytes: u64,
    applier: Sender<Task>,
    done: Receiver<Done>,
    /// Logged changes not yet handed to the applier, and when the first of
    /// them was logged.
    gathered: Vec<Change>,
    gathering_since: Instant,
    /// The log file whose checkpoint has been asked for and not confirmed.
    checkpointing: Option<usize>,
    /// Set when the log or the database could not be written: no further
    /// write is taken until a restart replays the log (reads go on from
    /// what was published).
    failed: Option<String>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        log: Log,
        checkpoint_bytes: u64,
        applier: Sender<Task>,
        done: Receiver<Done>,
    ) -> Self {
        Writer {
            shared,
            log,
            checkpoint_bytes,
            applier,
            done,
            gathered: Vec::new(),
            gathering_since: Instant::now(),
            checkpointing: None,
            failed: None,
        }
    }

    pub(crate) fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            let first = match jobs.recv_timeout(IDLE_CHECKPOINT) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.hand_over();
                    self.heard(false);
                    if self.checkpointing.is_none() {
                        self.move_on();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = first.request.weight();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.request.weight();
                        batch.push(job);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit_batch(batch);
            if self.gathered.len() >= GATHER_CHANGES || self.gathering_since.elapsed() >= GATHER {
                self.hand_over();
            }
            self.heard(false);
            if self.log.len() >= self.checkpoint_bytes {
                self.move_on();
            }
        }
        // Closing: checkpoint everything, so the next start replays little.
        self.move_on();
        self.heard(true);
    }

    /// Hands the gathered changes to the applier.
    fn hand_over(&mut self) {
        if self.gathered.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.gathered);
        if self.applier.send(Task::Apply(changes)).is_err() {
            self.fail("the applier stopped".into());
        }
    }

    /// Takes the applier's news; `wait`: until the asked-for checkpoint
    /// is confirmed.
    fn heard(&mut self, wait: bool) {
        loop {
            let news = if wait && self.checkpointing.is_some() {
                self.done.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                self.done.try_recv()
            };
            match news {
                Ok(Done::Checkpointed(file)) => {
                    if Some(file) == self.checkpointing {
                        self.checkpointing = None;
                    }
                }
                Ok(Done::Failed(why)) => self.fail(why),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    if self.failed.is_none() {
                        self.fail("the applier stopped".into());
                    }
                    return;
                }
            }
        }
    }

    fn fail(&mut self, why: String) {
        tracing::error!("{why}; this node takes no more writes until it restarts");
        self.failed.get_or_insert(why);
        self.checkpointing = None;
    }

    /// Moves the log on to its other file (once that one's checkpoint is
    /// confirmed) and asks for a checkpoint of the file it leaves.
    fn move_on(&mut self) {
        if self.log.len() == 0 || self.failed.is_some() {
            return;
        }
        self.heard(true);
        if self.failed.is_some() {
            // The file to move into may hold records redb lacks.
            return;
        }
        self.hand_over();
        if self.failed.is_some() {
            return;
        }
        let leaving = self.log.active();
        if let Err(e) = self.log.rotate() {
            // The active file keeps taking records; the next try may work.
            tracing::error!(error = %e, "the write-ahead log could not move to its other file");
            return;
        }
        if self.applier.send(Task::Checkpoint(leaving)).is_err() {
            self.fail("the applier stopped".into());
            return;
        }
        self.checkpointing = Some(leaving);
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        if let Some(why) = &self.failed {
            for job in batch {
                let _ = job.reply.send(Err(failed(why)));
            }
            return;
        }
        let mut decided = Decided::default();
        let results: Vec<Result<Reply>> = batch
            .iter()
            .map(|job| decided.job(&self.shared, job))
            .collect();
        if !decided.changes.is_empty() {
            let record = Record {
                changes: decided.changes,
            };
            let started = std::time::Instant::now();
            let appended = self.log.append(&record);
            metrics::histogram!("mnemo_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("mnemo_store_batch_writes").record(batch.len() as f64);
            if let Err(e) = appended {
                let why = format!("the write-ahead log could not be written: {e}");
                tracing::error!(
                    jobs = batch.len(),
                    "{why}; none of the batch was acknowledged"
                );
                self.fail(why.clone());
                for job in batch {
                    let _ = job.reply.send(Err(failed(&why)));
                }
                return;
            }
            self.shared.publish(decided.effects);
            if self.gathered.is_empty() {
                self.gathering_since = Instant::now();
            }
            self.gathered.extend(record.changes);
        }
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

fn failed(why: &str) -> StoreError {
    StoreError::Storage(redb::Error::Io(std::io::Error::other(why.to_owned())))
}

/// What one id holds, as far as the batch being decided knows.
#[derive(Clone)]
enum Slot {
    Memory(Arc<Memory>, u128),
    Tombstone,
    Empty,
}

/// A batch being decided: its changes for the log, its effects for readers,
/// and what its writes did so far, which later writes of the batch see
/// before the published state.
#[derive(Default)]
struct Decided {
    changes: Vec<Change>,
    effects: Vec<(String, Effect)>,
    /// Per space, per id: what this batch left there.
    slots: HashMap<String, HashMap<String, Slot>>,
    /// Spaces this batch dropped: nothing published of them counts.
    dropped: HashSet<String>,
    /// Per space this batch has touched, its dimension so far.
    dims: HashMap<String, usize>,
}

impl Decided {
    fn job(&mut self, shared: &Shared, job: &Job) -> Result<Reply> {
        if matches!(job.request, Request::Settle) {
            // Answered with the batch, after what came before it is
            // published; touches no space.
            return Ok(Reply::Settled);
        }
        // The published digest is current only for a space this batch has
        // not touched yet: a drop after a write in the same batch does not
        // happen.
        let known = self.dims.get(&job.space).copied();
        let untouched = known.is_none();
        let dim = known.unwrap_or_else(|| {
            shared
                .space(&job.space)
                .map_or(0, |s| s.index.read().expect("lock poisoned").dim())
        });
        let mut ctx = Ctx {
            space: &job.space,
            dim,
            shared,
            batch: self,
        };
        let result = match &job.request {
            Request::Local(op) => ctx.local(op).map(Reply::Written),
            Request::Merge(elements) => ctx.merge(elements).map(Reply::Merged),
            Request::Stamp { ids, at_ms } => Ok(Reply::Merged(ctx.stamp(ids, *at_ms))),
            Request::Settle => unreachable!("answered above"),
            Request::Drop { if_digest } => {
                let now = shared
                    .space(&job.space)
                    .map(|s| s.set.read().expect("lock poisoned").digest());
                if now == Some(*if_digest) && untouched {
                    ctx.drop_space();
                    Ok(Reply::Dropped(true))
                } else {
                    Ok(Reply::Dropped(false))
                }
            }
        };
        // Only a drop that happened forgets the dimension.
        let dim = if matches!(result, Ok(Reply::Dropped(true))) {
            0
        } else {
            ctx.dim
        };
        self.dims.insert(job.space.clone(), dim);
        result
    }
}

struct Ctx<'a> {
    space: &'a str,
    /// The space's embedding dimension (0 while no memory fixed it).
    dim: usize,
    shared: &'a Shared,
    batch: &'a mut Decided,
}

/// What storing one memory did.
enum Stored {
    New,
    /// The memory was there; its use was joined with the incoming one's.
    Used,
    /// The same memory was there (perhaps stamped at another time): the
    /// stored one.
    Same(Memory),
    /// Another memory holds the id; `replaced` when the incoming one won.
    Conflict {
        replaced: bool,
    },
    Forgotten,
}

impl Ctx<'_> {
    /// What `id` holds: this batch's doing first, then the published state.
    fn slot(&self, id: &str) -> Slot {
        if let Some(slot) = self.batch.slots.get(self.space).and_then(|s| s.get(id)) {
            return slot.clone();
        }
        if self.batch.dropped.contains(self.space) {
            return Slot::Empty;
        }
        let Some(s) = self.shared.space(self.space) else {
            return Slot::Empty;
        };
        let ix = s.index.read().expect("lock poisoned");
        let set = s.set.read().expect("lock poisoned");
        if set.is_tombstoned(id) {
            return Slot::Tombstone;
        }
        match (ix.get(id), set.memory_version(id)) {
            (Some(m), Some(v)) => Slot::Memory(Arc::clone(m), v),
            _ => Slot::Empty,
        }
    }

    fn set_slot(&mut self, id: &str, slot: Slot) {
        self.batch
            .slots
            .entry(self.space.to_owned())
            .or_default()
            .insert(id.to_owned(), slot);
    }

    fn change(&mut self, write: Write) {
        self.batch.changes.push(Change {
            space: self.space.to_owned(),
            write: Some(write),
        });
    }

    fn effect(&mut self, effect: Effect) {
        self.batch.effects.push((self.space.to_owned(), effect));
    }

    /// A client's write: refusals go back to the client.
    fn local(&mut self, op: &Op) -> Result<Written> {
        match op {
            Op::Remember(m) => match self.store_memory(m, false)? {
                Stored::New | Stored::Used => Ok(Written {
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
                let (changed, existed) = self.tombstone(id);
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
                let mut changed = match self.store_memory(merged, false)? {
                    Stored::New | Stored::Used => {
                        elements.push(Element::Memory(merged.clone()));
                        true
                    }
                    Stored::Same(stored) => {
                        elements.push(Element::Memory(stored));
                        false
                    }
                    // The merged memory could not be stored: its inputs
                    // stay, or what they said would be gone.
                    Stored::Conflict { .. } | Stored::Forgotten => {
                        return Ok(Written {
                            changed: false,
                            existed: false,
                            elements,
                        });
                    }
                };
                for id in inputs {
                    changed |= self.tombstone(id).0;
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
    fn merge(&mut self, elements: &[Element]) -> Result<Merged> {
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
                Element::Memory(m) => match self.store_memory(m, true)? {
                    Stored::New | Stored::Used => true,
                    Stored::Same(_) | Stored::Forgotten => false,
                    Stored::Conflict { replaced } => {
                        out.conflicts += 1;
                        replaced
                    }
                },
                Element::Tombstone(id) => self.tombstone(id).0,
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
    fn store_memory(&mut self, m: &Memory, merging: bool) -> Result<Stored> {
        let encoded = m.encode_to_vec();
        let incoming = version(m, &encoded);
        match self.slot(&m.id) {
            Slot::Tombstone => return Ok(Stored::Forgotten),
            Slot::Memory(stored, held) => {
                if same_write(held, incoming) && stored.same_as(m) {
                    if !merging {
                        return Ok(Stored::Same(Memory::clone(&stored)));
                    }
                    // One memory used differently on two holders: join
                    // (compared by use itself, not by its hash).
                    let joined = with_usage(&stored, &m.usage());
                    if joined.usage() == stored.usage() {
                        return Ok(Stored::Same(joined));
                    }
                    self.put_used(&joined);
                    return Ok(Stored::Used);
                }
                if held == incoming {
                    return Ok(Stored::Same(m.clone()));
                }
                if !merging {
                    return Ok(if stored.same_as(m) {
                        Stored::Same(Memory::clone(&stored))
                    } else {
                        Stored::Conflict { replaced: false }
                    });
                }
                if !incoming_wins(held, incoming) {
                    return Ok(Stored::Conflict { replaced: false });
                }
                self.put(m, encoded, incoming);
                return Ok(Stored::Conflict { replaced: true });
            }
            Slot::Empty => {}
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
        self.put(m, encoded, incoming);
        Ok(Stored::New)
    }

    /// Stores a new use of the live memory `m` (same write, joined use).
    fn put_used(&mut self, m: &Memory) {
        let encoded = m.encode_to_vec();
        let v = version(m, &encoded);
        self.put(m, encoded, v);
    }

    /// Stamps the live memories among `ids` that are due (see
    /// [`crate::decay::due_a_stamp`]) as recalled at `at_ms`. Ids forgotten,
    /// gone, or of a dropped space are left alone: a stamp never creates.
    fn stamp(&mut self, ids: &[String], at_ms: i64) -> Merged {
        let mut out = Merged::default();
        for id in ids {
            let Slot::Memory(stored, _) = self.slot(id) else {
                out.unchanged += 1;
                continue;
            };
            if !crate::decay::due_a_stamp(&stored, at_ms) {
                out.unchanged += 1;
                continue;
            }
            let stamp = crate::memory::Usage {
                recalled_at_ms: at_ms,
                decay: None,
            };
            self.put_used(&with_usage(&stored, &stamp));
            out.applied += 1;
        }
        out
    }

    fn put(&mut self, m: &Memory, encoded: Vec<u8>, v: u128) {
        let m = Arc::new(m.clone());
        self.set_slot(&m.id, Slot::Memory(Arc::clone(&m), v));
        self.change(Write::PutMemory(PutMemory {
            id: m.id.clone(),
            bytes: encoded,
        }));
        let element = memory_element(&m.id, v);
        self.effect(Effect::Insert(m, element));
    }

    /// Tombstones `id`. Returns (whether the tombstone is new, whether a
    /// live memory was removed).
    fn tombstone(&mut self, id: &str) -> (bool, bool) {
        let existed = match self.slot(id) {
            Slot::Tombstone => return (false, false),
            Slot::Memory(..) => true,
            Slot::Empty => false,
        };
        self.set_slot(id, Slot::Tombstone);
        self.change(Write::PutTombstone(PutTombstone {
            id: id.to_owned(),
            at_ms: crate::time::now_ms() as u64,
        }));
        if existed {
            self.change(Write::RemoveMemory(id.to_owned()));
        }
        self.effect(Effect::Tombstone(id.into()));
        (true, existed)
    }

    fn drop_space(&mut self) {
        self.batch.slots.remove(self.space);
        self.batch.dropped.insert(self.space.to_owned());
        self.change(Write::DropSpace(DropSpace {}));
        self.effect(Effect::Drop);
    }
}
