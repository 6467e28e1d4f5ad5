//! The store facade: opens the database, rebuilds the recall index, hands
//! writes to the writer thread and answers reads from memory.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, mpsc};

use negentropy::NegentropyStorageVector;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use crate::applier;
use crate::consolidate::{self, MAX_CONSOLIDATE};
use crate::decay::{self, Policy};
use crate::embed;
use crate::error::{Result, StoreError};
use crate::index::Query;
use crate::memory::{Memory, Op, Scored};
use crate::set::{
    Element, ElementId, Entry, Summary, empty_reconciliation, memory_element, version,
};
use crate::space::{Effect, Shared};
use crate::tables::{self, MEMORIES, TOMBSTONES};
use crate::time::now_ms;
use crate::wal::Log;
use crate::writer::{self, Job, Merged, Reply, Request, Written};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "mnemo.redb";

/// How the store is run.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// A checkpoint (a durable redb commit that lets the write-ahead log
    /// start over) is made once the log holds this many bytes, and whenever
    /// writes pause. Bounds the log's size and the replay at start-up.
    pub checkpoint_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            checkpoint_bytes: 64 << 20,
        }
    }
}

/// A cue to recall with: text, an embedding, or both.
///
/// Text ranks by BM25 over the memories' words, an embedding by cosine
/// similarity, both by reciprocal rank fusion of the two rankings (see
/// [`crate::bm25`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cue<'a> {
    /// Text (may be empty when an embedding is given).
    pub text: &'a str,
    /// An embedding in the space's dimension (may be empty).
    pub embedding: &'a [f32],
    /// Also return memories with no evidence of relevance (no shared word,
    /// no positive similarity), after the others, with score 0.
    pub include_unmatched: bool,
    /// Only memories carrying every one of these tags.
    pub tags: &'a [String],
}

/// A space as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceStats {
    /// Space name.
    pub name: String,
    /// Live memories.
    pub memories: u64,
    /// Tombstones (forgotten ids).
    pub tombstones: u64,
    /// Order-independent digest of every element (memories and
    /// tombstones): holders with equal digests hold the same state.
    pub digest: u128,
    /// Embedding dimension (0 while unset).
    pub dimension: u32,
}

/// How to consolidate a space.
#[derive(Debug, Clone, Copy)]
pub struct Consolidate {
    /// Similarity of client-supplied embeddings at or above which
    /// memories whose texts do not conflict merge.
    pub threshold: f32,
    /// Only plan: change nothing.
    pub dry_run: bool,
    /// How idle memories decay; `None`: they do not.
    pub decay: Option<Policy>,
    /// The consolidation's timestamp (milliseconds since the Unix epoch),
    /// the only clock decay reads.
    pub as_of_ms: i64,
}

/// A memory whose confidence a consolidation decayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decayed {
    /// Its id.
    pub id: String,
    /// Its confidence after.
    pub confidence: f32,
}

/// What a consolidation did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsolidationReport {
    /// The merges, sorted by their inputs.
    pub merged: Vec<crate::memory::Consolidation>,
    /// The memories it decayed (other than merged ones), by id.
    pub decayed: Vec<Decayed>,
    /// Live memories before.
    pub before: u64,
    /// Live memories after.
    pub after: u64,
    /// The elements the merges stand for, to send to the other holders.
    pub elements: Vec<Element>,
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
    /// Opens or creates the store in `dir` and rebuilds what it keeps in
    /// memory (recall index, element sets).
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with options. Whatever the write-ahead log holds
    /// (writes acknowledged since the last checkpoint) is applied first.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join(DB_FILE))?;
        tables::create(&db)?;
        let (mut log, records) = Log::open(dir)?;
        if !records.is_empty() {
            let changes = records.iter().flat_map(|r| &r.changes);
            let applied = tables::apply(&db, changes, redb::Durability::Immediate)?;
            tracing::info!(
                records = records.len(),
                changes = applied,
                "applied the write-ahead log"
            );
        }
        // Only now that redb holds them durably may the log start over.
        log.begin()?;
        let shared = Arc::new(Shared::new(db));
        load(&shared)?;
        let (applier_tasks, applier_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let applier_shared = Arc::clone(&shared);
        let applier = std::thread::Builder::new()
            .name("mnemo-store-applier".into())
            .spawn(move || applier::run(&applier_shared, &applier_rx, &done_tx))?;
        let (jobs, rx) = mpsc::channel();
        let writer = writer::Writer::new(
            Arc::clone(&shared),
            log,
            options.checkpoint_bytes,
            applier_tasks,
            done_rx,
        );
        let thread = std::thread::Builder::new()
            .name("mnemo-store-writer".into())
            .spawn(move || {
                writer.run(&rx);
                // The writer dropped its end: the applier drains and ends.
                let _ = applier.join();
            })?;
        let writer = Arc::new(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        });
        Ok(Store { writer, shared })
    }

    async fn submit(&self, space: &str, request: Request) -> Result<Reply> {
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

    async fn write(&self, space: &str, op: Op) -> Result<Written> {
        match self.submit(space, Request::Local(op)).await? {
            Reply::Written(w) => Ok(w),
            _ => unreachable!("a local write is answered with Written"),
        }
    }

    /// Remembers a client's memory. Fills in what the client left out: an
    /// id (UUIDv7), the lexical embedding, the creation time. Returns the
    /// stored memory's id with what the write did.
    pub async fn remember(&self, space: &str, mut memory: Memory) -> Result<(String, Written)> {
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
        let written = self.write(space, Op::Remember(memory)).await?;
        Ok((id, written))
    }

    /// Forgets a memory: writes a tombstone, so the id stays forgotten on
    /// every holder and across restarts.
    pub async fn forget(&self, space: &str, id: &str) -> Result<Written> {
        crate::validate::space(space)?;
        crate::validate::id(id)?;
        self.write(space, Op::Forget(id.to_owned())).await
    }

    /// Returns once every write submitted before it, including the stamps
    /// recalls leave in the background, is published.
    pub async fn settled(&self) -> Result<()> {
        self.submit("", Request::Settle).await.map(drop)
    }

    /// Merges elements another holder sent (see [`crate::set`]). Invalid
    /// elements are refused one by one; the others are applied.
    pub async fn merge(&self, space: &str, elements: Vec<Element>) -> Result<Merged> {
        crate::validate::space(space)?;
        match self.submit(space, Request::Merge(elements)).await? {
            Reply::Merged(m) => Ok(m),
            _ => unreachable!("a merge is answered with Merged"),
        }
    }

    /// Removes every trace of `space` from this node (after its holders
    /// took it over), provided its digest is still `if_digest`: anything
    /// that arrived since the caller compared it with the holders keeps it.
    /// Returns whether it was dropped.
    pub async fn drop_space(&self, space: &str, if_digest: u128) -> Result<bool> {
        crate::validate::space(space)?;
        match self.submit(space, Request::Drop { if_digest }).await? {
            Reply::Dropped(dropped) => Ok(dropped),
            _ => unreachable!("a drop is answered with Dropped"),
        }
    }

    /// Merges memories that say the same thing (see [`crate::consolidate`]):
    /// each merge stores the merged memory and tombstones its inputs. With
    /// `dry_run`, only plans: nothing changes and no elements are returned.
    pub async fn consolidate(
        &self,
        space: &str,
        threshold: f32,
        dry_run: bool,
    ) -> Result<ConsolidationReport> {
        self.consolidate_with(
            space,
            Consolidate {
                threshold,
                dry_run,
                decay: None,
                as_of_ms: 0,
            },
        )
        .await
    }

    /// Consolidates `space` as `how` says: merges memories that say the
    /// same thing, then (with a decay policy) decays idle memories as of
    /// the consolidation's timestamp (see [`crate::decay`]). Sees every
    /// recall that returned before it was called.
    pub async fn consolidate_with(
        &self,
        space: &str,
        how: Consolidate,
    ) -> Result<ConsolidationReport> {
        crate::validate::space(space)?;
        crate::validate::threshold(how.threshold)?;
        if let Some(policy) = how.decay {
            crate::validate::decay_policy(policy)?;
            crate::validate::use_time("as_of_ms", how.as_of_ms)?;
            // Recalls stamp their memories through the writer.
            self.settled().await?;
        }
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
        let (merges, decays) = tokio::task::spawn_blocking(move || {
            let items: Vec<(Arc<Memory>, &[f32])> = rows
                .iter()
                .map(|(m, row)| (Arc::clone(m), row.as_slice()))
                .collect();
            let mut merges = consolidate::plan(&items, how.threshold);
            let Some(policy) = how.decay else {
                return (merges, Vec::new());
            };
            // Merged memories decay as they are made; the others that
            // stay decay in place.
            for merge in &mut merges {
                let made = merge.merged.as_mut().expect("a plan names its memory");
                if let Some(d) = decay::decayed(made, policy, how.as_of_ms) {
                    *made = d;
                }
            }
            let inputs: HashSet<&str> = merges
                .iter()
                .flat_map(|m| m.inputs.iter().map(String::as_str))
                .collect();
            let staying: Vec<Arc<Memory>> = items
                .into_iter()
                .map(|(m, _)| m)
                .filter(|m| !inputs.contains(m.id.as_str()))
                .collect();
            let decays = decay::plan(&staying, policy, how.as_of_ms);
            (merges, decays)
        })
        .await
        .map_err(|e| StoreError::Storage(redb::Error::Io(std::io::Error::other(e.to_string()))))?;
        let decayed = decays
            .iter()
            .map(|m| Decayed {
                id: m.id.clone(),
                confidence: m.current_confidence(),
            })
            .collect();
        if how.dry_run {
            let inputs: usize = merges.iter().map(|m| m.inputs.len()).sum();
            return Ok(ConsolidationReport {
                after: before - inputs as u64 + merges.len() as u64,
                merged: merges,
                decayed,
                before,
                elements: Vec::new(),
            });
        }
        let mut elements = Vec::new();
        for merge in &merges {
            let written = self.write(space, Op::Consolidate(merge.clone())).await?;
            elements.extend(written.elements);
        }
        if !decays.is_empty() {
            let decays: Vec<Element> = decays.into_iter().map(Element::Memory).collect();
            let applied = self.merge(space, decays.clone()).await?;
            debug_assert!(applied.refused.is_empty(), "planned decays are valid");
            elements.extend(decays);
        }
        let after = self.len(space) as u64;
        Ok(ConsolidationReport {
            merged: merges,
            decayed,
            before,
            after,
            elements,
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
        crate::validate::cue(cue.text, cue.embedding)?;
        crate::validate::tags(cue.tags)?;
        let Some(s) = self.shared.space(space) else {
            return Ok(Vec::new());
        };
        // The words are counted before the index is locked.
        let terms = crate::text::terms(cue.text);
        let ix = s.index.read().expect("lock poisoned");
        if ix.len() == 0 {
            return Ok(Vec::new());
        }
        let vector = cue_vector(space, cue.embedding, ix.dim())?;
        let query = Query {
            terms: &terms,
            vector: vector.as_deref(),
            include_unmatched: cue.include_unmatched,
            tags: cue.tags,
        };
        let found = ix.rank(&query, k, min_confidence);
        drop(ix);
        self.stamp_recalled(space, &found);
        Ok(found)
    }

    /// Records that a recall returned `found` (those with evidence of
    /// relevance), for decay: the writer stamps each memory still live and
    /// due (see [`decay::due_a_stamp`]), in the background; the recall does
    /// not wait. Other holders learn it through anti-entropy.
    fn stamp_recalled(&self, space: &str, found: &[Scored]) {
        let now = now_ms();
        let ids: Vec<String> = found
            .iter()
            .filter(|s| s.score > 0.0 && decay::due_a_stamp(&s.memory, now))
            .map(|s| s.memory.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let Some(jobs) = self.writer.jobs.as_ref() else {
            return;
        };
        let (reply, _) = oneshot::channel();
        let _ = jobs.send(Job {
            space: space.to_owned(),
            request: Request::Stamp { ids, at_ms: now },
            reply,
        });
    }

    /// Up to `limit` live memories of `space` whose ids sort after `after`,
    /// in id order.
    pub fn list(&self, space: &str, after: &str, limit: usize) -> Vec<Arc<Memory>> {
        let Some(s) = self.shared.space(space) else {
            return Vec::new();
        };
        let ix = s.index.read().expect("lock poisoned");
        let mut page: Vec<&Arc<Memory>> = ix
            .records()
            .iter()
            .filter(|m| m.id.as_str() > after)
            .collect();
        if page.len() > limit {
            page.select_nth_unstable_by(limit, |a, b| a.id.cmp(&b.id));
            page.truncate(limit);
        }
        page.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        page.into_iter().cloned().collect()
    }

    /// The live memory consolidation merged `id` into, if any.
    pub fn merged_into(&self, space: &str, id: &str) -> Option<Arc<Memory>> {
        let s = self.shared.space(space)?;
        let ix = s.index.read().expect("lock poisoned");
        ix.records()
            .iter()
            .filter(|m| m.merged_from.iter().any(|i| i.id == id))
            .min_by(|a, b| a.id.cmp(&b.id))
            .cloned()
    }

    /// Reads one live memory.
    pub fn get(&self, space: &str, id: &str) -> Option<Arc<Memory>> {
        let s = self.shared.space(space)?;
        let ix = s.index.read().expect("lock poisoned");
        ix.get(id).cloned()
    }

    /// The space's element ids as sealed negentropy storage, for
    /// anti-entropy (empty for a space this node has no data of). Built once
    /// per change of the space and shared until the next.
    pub fn reconciliation(&self, space: &str) -> Arc<NegentropyStorageVector> {
        match self.shared.space(space) {
            Some(s) => s.set.write().expect("lock poisoned").reconciliation(),
            None => empty_reconciliation(),
        }
    }

    /// The space summarised by bucket, for a one-round comparison with
    /// another holder (all empty for a space this node has no data of).
    pub fn summary(&self, space: &str) -> Summary {
        self.shared.space(space).map_or_else(Summary::default, |s| {
            s.set.read().expect("lock poisoned").summary()
        })
    }

    /// This node's element ids of `space` in every bucket where its
    /// summary and `theirs` differ, or `None` if those buckets hold more
    /// than `limit` (the work is bounded by `limit`, whatever is asked).
    pub fn differing_ids(
        &self,
        space: &str,
        theirs: &Summary,
        limit: usize,
    ) -> Option<Vec<ElementId>> {
        match self.shared.space(space) {
            Some(s) => s
                .set
                .read()
                .expect("lock poisoned")
                .differing_ids(theirs, limit),
            None => Some(Vec::new()),
        }
    }

    /// Of `ids`, those this node does not hold.
    pub fn lacking(&self, space: &str, ids: &[ElementId]) -> Vec<ElementId> {
        let Some(s) = self.shared.space(space) else {
            return ids.to_vec();
        };
        let set = s.set.read().expect("lock poisoned");
        ids.iter()
            .filter(|id| set.get(id).is_none())
            .copied()
            .collect()
    }

    /// The elements with these ids that this node holds (ids it does not
    /// hold, for instance because they changed meanwhile, are skipped).
    pub fn elements(&self, space: &str, ids: &[ElementId]) -> Vec<Element> {
        let Some(s) = self.shared.space(space) else {
            return Vec::new();
        };
        let ix = s.index.read().expect("lock poisoned");
        let set = s.set.read().expect("lock poisoned");
        ids.iter()
            .filter_map(|id| match set.get(id)? {
                Entry::Memory(m) => ix.get(m).map(|m| Element::Memory(Memory::clone(m))),
                Entry::Tombstone(t) => Some(Element::Tombstone(t.to_string())),
            })
            .collect()
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

    /// One space's figures, if this node has data of it.
    pub fn stats(&self, space: &str) -> Option<SpaceStats> {
        let s = self.shared.space(space)?;
        Some(stats(space, &s))
    }

    /// Every space this node has data of, sorted by name.
    pub fn spaces(&self) -> Vec<SpaceStats> {
        let mut out: Vec<SpaceStats> = self
            .shared
            .all()
            .iter()
            .map(|(name, s)| stats(name, s))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Names of every space this node has data of, sorted.
    pub fn space_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.shared.all().into_iter().map(|(n, _)| n).collect();
        out.sort();
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

fn stats(name: &str, s: &crate::space::Space) -> SpaceStats {
    let ix = s.index.read().expect("lock poisoned");
    let set = s.set.read().expect("lock poisoned");
    SpaceStats {
        name: name.to_owned(),
        memories: ix.len() as u64,
        tombstones: set.tombstones(),
        digest: set.digest(),
        dimension: ix.dim() as u32,
    }
}

/// The unit-length vector of a cue embedding for a space of dimension
/// `dim` (`None` when the cue has none).
fn cue_vector(space: &str, embedding: &[f32], dim: usize) -> Result<Option<Vec<f32>>> {
    if embedding.is_empty() {
        return Ok(None);
    }
    if embedding.len() != dim {
        return Err(StoreError::invalid(
            "cue_embedding",
            format!(
                "has {} dimensions but space {space:?} uses {dim}",
                embedding.len()
            ),
        ));
    }
    let mut v = embedding.to_vec();
    embed::normalize(&mut v);
    Ok(Some(v))
}

/// Rebuilds every space's index and element set from the database.
fn load(shared: &Shared) -> Result<()> {
    let txn = shared.db.begin_read()?;
    let memories = txn.open_table(MEMORIES)?;
    let mut effects = Vec::new();
    for row in memories.iter()? {
        let (key, value) = row?;
        let (space, _) = key.value();
        let bytes = value.value();
        let m = Memory::decode(bytes)
            .map_err(|e| StoreError::Storage(redb::Error::Corrupted(e.to_string())))?;
        let element = memory_element(&m.id, version(&m, bytes));
        effects.push((space.to_owned(), Effect::Insert(Arc::new(m), element)));
    }
    let count = effects.len();
    let tombstones = txn.open_table(TOMBSTONES)?;
    for row in tombstones.iter()? {
        let (key, _) = row?;
        let (space, id) = key.value();
        effects.push((space.to_owned(), Effect::Tombstone(id.to_owned())));
    }
    let forgotten = effects.len() - count;
    shared.publish(effects);
    tracing::info!(memories = count, tombstones = forgotten, "store loaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_memory(id: &str) -> Memory {
        let content = format!("the note {id}");
        Memory {
            id: id.into(),
            embedding: embed::lexical(&content),
            content,
            confidence: 0.9,
            created_at_ms: 1,
            ..Memory::default()
        }
    }

    async fn stamp(store: &Store, space: &str, ids: &[&str], at_ms: i64) -> Merged {
        let ids = ids.iter().map(|s| (*s).to_owned()).collect();
        match store.submit(space, Request::Stamp { ids, at_ms }).await {
            Ok(Reply::Merged(m)) => m,
            _ => panic!("a stamp is answered with Merged"),
        }
    }

    /// A stamp whose recall ranked before the space was dropped, and which
    /// reaches the writer after the drop, does not bring the space back.
    #[tokio::test]
    async fn a_stamp_after_a_drop_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.remember("s", old_memory("a")).await.unwrap();
        let digest = store.stats("s").unwrap().digest;
        assert!(store.drop_space("s", digest).await.unwrap());
        let stamped = stamp(&store, "s", &["a"], now_ms()).await;
        assert_eq!((stamped.applied, stamped.unchanged), (0, 1));
        assert!(!store.holds("s"));
        drop(store);
        assert!(!Store::open(dir.path()).unwrap().holds("s"));
    }

    /// Stamps of one memory queued by concurrent recalls write it once; a
    /// forgotten memory is not stamped.
    #[tokio::test]
    async fn concurrent_stamps_write_once_and_never_over_a_forget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.remember("s", old_memory("a")).await.unwrap();
        store.remember("s", old_memory("b")).await.unwrap();
        store.forget("s", "b").await.unwrap();
        let now = now_ms();
        let first = stamp(&store, "s", &["a", "b"], now).await;
        let second = stamp(&store, "s", &["a"], now + 1).await;
        assert_eq!((first.applied, first.unchanged), (1, 1));
        assert_eq!((second.applied, second.unchanged), (0, 1));
        assert_eq!(store.get("s", "a").unwrap().recalled_at_ms, now);
        assert!(store.get("s", "b").is_none());
    }
}
