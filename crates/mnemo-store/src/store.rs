//! The store facade: opens the database, rebuilds the recall index, hands
//! writes to the writer thread and answers reads from memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::consolidate::{self, MAX_CONSOLIDATE};
use crate::embed::{self, LEXICAL_DIM};
use crate::error::{Result, StoreError};
use crate::index::SpaceIndex;
use crate::memory::{Consolidation, LogEntry, Memory, Op, Scored};
use crate::writer::{self, Job, Outcome, Request};

pub(crate) const MEMORIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memories");
/// Forgotten ids, with the log position that forgot them.
pub(crate) const TOMBSTONES: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("tombstones");
/// Each space's ordered changes, for replication and catch-up.
pub(crate) const LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("log");
/// Per space: (last log position, embedding dimension).
pub(crate) const SPACES: TableDefinition<&str, (u64, u32)> = TableDefinition::new("spaces");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "mnemo.redb";

pub(crate) struct Space {
    pub(crate) index: RwLock<SpaceIndex>,
    pub(crate) seq: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) db: Database,
    spaces: RwLock<HashMap<String, Arc<Space>>>,
}

impl Shared {
    pub(crate) fn space(&self, name: &str) -> Option<Arc<Space>> {
        self.spaces
            .read()
            .expect("lock poisoned")
            .get(name)
            .cloned()
    }

    pub(crate) fn space_or_create(&self, name: &str) -> Arc<Space> {
        if let Some(s) = self.space(name) {
            return s;
        }
        let mut spaces = self.spaces.write().expect("lock poisoned");
        Arc::clone(spaces.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Space {
                index: RwLock::new(SpaceIndex::default()),
                seq: AtomicU64::new(0),
            })
        }))
    }
}

/// A cue to recall with: text, an embedding, or both (the embedding wins).
#[derive(Debug, Clone, Copy)]
pub struct Cue<'a> {
    /// Text; embedded lexically when no embedding is given.
    pub text: &'a str,
    /// An embedding in the space's dimension.
    pub embedding: &'a [f32],
}

/// A space as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceStats {
    /// Space name.
    pub name: String,
    /// Live memories.
    pub memories: u64,
    /// Last log position.
    pub seq: u64,
    /// Embedding dimension (0 while unset).
    pub dimension: u32,
}

/// What a consolidation did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsolidationReport {
    /// The merges, sorted by their inputs.
    pub merged: Vec<Consolidation>,
    /// Live memories before and after.
    pub before: u64,
    /// Live memories after.
    pub after: u64,
}

/// A node's durable memory spaces. Cheap to clone; the last clone dropped
/// waits for the writer to finish and closes the database.
#[derive(Clone)]
pub struct Store {
    // Dropped first: the writer thread holds its own `Arc<Shared>`.
    writer: Arc<Writer>,
    shared: Arc<Shared>,
}

struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it is drained.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens or creates the store in `dir` and rebuilds the recall index.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Storage(e.into()))?;
        let db = Database::create(dir.join(DB_FILE))?;
        writer::create_tables(&db)?;
        let shared = Arc::new(Shared {
            db,
            spaces: RwLock::new(HashMap::new()),
        });
        load(&shared)?;
        let (jobs, rx) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mnemo-store-writer".into())
            .spawn(move || writer::run(&writer_shared, &rx))
            .map_err(|e| StoreError::Storage(e.into()))?;
        let writer = Arc::new(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        });
        Ok(Store { writer, shared })
    }

    async fn submit(&self, space: &str, request: Request) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .jobs
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Job {
                space: space.to_owned(),
                request,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Remembers a memory as the space's primary. Fills in what the client
    /// left out: an id (UUIDv7), the lexical embedding, the creation time.
    /// Returns the stored memory's id with the outcome.
    pub async fn remember(&self, space: &str, mut memory: Memory) -> Result<(String, Outcome)> {
        crate::validate::memory(space, &memory)?;
        if memory.id.is_empty() {
            memory.id = uuid::Uuid::now_v7().to_string();
        }
        if memory.embedding.is_empty() {
            memory.embedding = embed::lexical(&memory.content);
        }
        self.check_dimension(space, "embedding", memory.embedding.len())?;
        if memory.created_at_ms == 0 {
            memory.created_at_ms = now_ms();
        }
        let id = memory.id.clone();
        let outcome = self
            .submit(space, Request::Local(Op::Remember(memory)))
            .await?;
        Ok((id, outcome))
    }

    /// Forgets a memory as the space's primary: writes a tombstone, so the id
    /// stays forgotten on every replica and across restarts.
    pub async fn forget(&self, space: &str, id: &str) -> Result<Outcome> {
        crate::validate::space(space)?;
        crate::validate::id(id)?;
        self.submit(space, Request::Local(Op::Forget(id.to_owned())))
            .await
    }

    /// Applies entries ordered by the space's primary. Entries at or below
    /// the applied position are skipped; a gap is refused.
    pub async fn apply_replicated(&self, space: &str, entries: Vec<LogEntry>) -> Result<u64> {
        crate::validate::space(space)?;
        Ok(self.submit(space, Request::Replicated(entries)).await?.seq)
    }

    /// Merges near-duplicates (see [`crate::consolidate`]) and commits the
    /// merges through the log, so replicas converge on the same result.
    pub async fn consolidate(&self, space: &str, threshold: f32) -> Result<ConsolidationReport> {
        crate::validate::space(space)?;
        crate::validate::threshold(threshold)?;
        let s = self
            .shared
            .space(space)
            .ok_or_else(|| StoreError::NoSuchSpace(space.into()))?;
        // Copy the rows and let go of the index before the O(n²) pass, and
        // run that pass off the async workers: holding the read lock would
        // stall the writer thread (and so every write) for its duration.
        let rows: Vec<(Arc<Memory>, Vec<f32>)> = {
            let ix = s.index.read().expect("lock poisoned");
            if ix.len() > MAX_CONSOLIDATE {
                return Err(StoreError::invalid(
                    "space",
                    format!(
                        "holds {} memories; consolidation handles at most {MAX_CONSOLIDATE}",
                        ix.len()
                    ),
                ));
            }
            ix.records()
                .iter()
                .enumerate()
                .map(|(i, m)| (Arc::clone(m), ix.row(i).to_vec()))
                .collect()
        };
        let before = rows.len() as u64;
        let merges = tokio::task::spawn_blocking(move || {
            let items: Vec<(Arc<Memory>, &[f32])> = rows
                .iter()
                .map(|(m, row)| (Arc::clone(m), row.as_slice()))
                .collect();
            consolidate::plan(&items, threshold)
        })
        .await
        .map_err(|e| StoreError::Storage(redb::Error::Io(std::io::Error::other(e.to_string()))))?;
        for merge in &merges {
            self.submit(space, Request::Local(Op::Consolidate(merge.clone())))
                .await?;
        }
        let after = self.len(space) as u64;
        Ok(ConsolidationReport {
            merged: merges,
            before,
            after,
        })
    }

    /// The `k` memories of `space` that best match `cue`, best first.
    /// An unknown space has no memories.
    pub fn recall(
        &self,
        space: &str,
        cue: Cue<'_>,
        k: usize,
        min_confidence: f32,
    ) -> Result<Vec<Scored>> {
        let Some(s) = self.shared.space(space) else {
            return Ok(Vec::new());
        };
        let ix = s.index.read().expect("lock poisoned");
        if ix.len() == 0 {
            return Ok(Vec::new());
        }
        let vector = cue_vector(space, cue, ix.dim())?;
        Ok(ix.top_k(&vector, k, min_confidence))
    }

    /// Reads one live memory.
    pub fn get(&self, space: &str, id: &str) -> Option<Arc<Memory>> {
        let s = self.shared.space(space)?;
        let ix = s.index.read().expect("lock poisoned");
        ix.get(id).cloned()
    }

    /// Up to `limit` log entries of `space` after position `after`.
    pub fn log_since(&self, space: &str, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        let txn = self.shared.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for row in log
            .range((space, after + 1)..=(space, u64::MAX))?
            .take(limit)
        {
            let (_, v) = row?;
            out.push(
                LogEntry::decode(v.value())
                    .map_err(|e| StoreError::Storage(redb::Error::Corrupted(e.to_string())))?,
            );
        }
        Ok(out)
    }

    /// The last log position of `space` (0 when it has none).
    pub fn seq(&self, space: &str) -> u64 {
        self.shared
            .space(space)
            .map_or(0, |s| s.seq.load(Ordering::Acquire))
    }

    /// Whether this node has any data of `space`.
    pub fn holds(&self, space: &str) -> bool {
        self.shared.space(space).is_some()
    }

    /// Live memories of `space` on this node.
    pub fn len(&self, space: &str) -> usize {
        self.shared
            .space(space)
            .map_or(0, |s| s.index.read().expect("lock poisoned").len())
    }

    /// Every space this node has data of, sorted by name.
    pub fn spaces(&self) -> Vec<SpaceStats> {
        let spaces = self.shared.spaces.read().expect("lock poisoned");
        let mut out: Vec<SpaceStats> = spaces
            .iter()
            .map(|(name, s)| {
                let ix = s.index.read().expect("lock poisoned");
                SpaceStats {
                    name: name.clone(),
                    memories: ix.len() as u64,
                    seq: s.seq.load(Ordering::Acquire),
                    dimension: ix.dim() as u32,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Refuses an embedding whose dimension differs from the space's.
    fn check_dimension(&self, space: &str, field: &'static str, dim: usize) -> Result<()> {
        let Some(s) = self.shared.space(space) else {
            return Ok(());
        };
        let have = s.index.read().expect("lock poisoned").dim();
        if have != 0 && have != dim {
            return Err(StoreError::invalid(
                field,
                format!("has {dim} dimensions but space {space:?} uses {have}"),
            ));
        }
        Ok(())
    }
}

/// The unit-length vector of a cue for a space of dimension `dim`.
fn cue_vector(space: &str, cue: Cue<'_>, dim: usize) -> Result<Vec<f32>> {
    crate::validate::cue(cue.text, cue.embedding)?;
    if cue.embedding.is_empty() {
        if dim != LEXICAL_DIM {
            return Err(StoreError::invalid(
                "cue_embedding",
                format!(
                    "is required: space {space:?} holds {dim}-dimension embeddings, text cues embed to {LEXICAL_DIM}"
                ),
            ));
        }
        return Ok(embed::lexical(cue.text));
    }
    if cue.embedding.len() != dim {
        return Err(StoreError::invalid(
            "cue_embedding",
            format!(
                "has {} dimensions but space {space:?} uses {dim}",
                cue.embedding.len()
            ),
        ));
    }
    let mut v = cue.embedding.to_vec();
    embed::normalize(&mut v);
    Ok(v)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Rebuilds every space's index from the database.
fn load(shared: &Shared) -> Result<()> {
    let txn = shared.db.begin_read()?;
    let spaces = txn.open_table(SPACES)?;
    for row in spaces.iter()? {
        let (name, meta) = row?;
        let (seq, dim) = meta.value();
        let s = shared.space_or_create(name.value());
        s.seq.store(seq, Ordering::Release);
        s.index
            .write()
            .expect("lock poisoned")
            .set_dim(dim as usize);
    }
    let memories = txn.open_table(MEMORIES)?;
    let mut count = 0usize;
    for row in memories.iter()? {
        let (key, value) = row?;
        let (space, _) = key.value();
        let m = Memory::decode(value.value())
            .map_err(|e| StoreError::Storage(redb::Error::Corrupted(e.to_string())))?;
        shared
            .space_or_create(space)
            .index
            .write()
            .expect("lock poisoned")
            .insert(Arc::new(m));
        count += 1;
    }
    tracing::info!(memories = count, "recall index rebuilt");
    Ok(())
}
