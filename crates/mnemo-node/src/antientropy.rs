//! Anti-entropy: the truth about what every holder of a space should have.
//!
//! Two holders compare their element sets by range-based set reconciliation
//! ([`mnemo_store::reconcile`]) and then exchange exactly the elements one
//! has and the other lacks, both ways. Cost grows with the difference.
//!
//! When it runs:
//! - **periodically**: every [`NodeConfig::anti_entropy_interval`](crate::NodeConfig)
//!   each space is compared with one other holder, in turn;
//! - **repair**: spaces whose writes replication could not deliver to a
//!   peer, at the first periodic pass that finds the peer reachable;
//! - **catch-up**: a node that must serve a space it lacks or holds stale
//!   (see [`crate::catchup`]) syncs it with every other live holder before
//!   answering reads of it; a *settle* does this for every space it holds
//!   after a start, a partition's end or a member's departure; a catch-up
//!   that failed is tried again at each periodic pass and when a member
//!   returns;
//! - **hand-over**: a space this node holds but placement no longer names it
//!   for goes to every current holder, and is dropped here only once each
//!   of them has it (and this node still is not a holder).
//!
//! A read answered in a primary's place asks less: only what another
//! holder has and this one lacks, found by comparing the space's summary
//! by bucket ([`pull_difference`]), in one round trip when they agree.
//!
//! Moving elements is capped at [`NodeConfig::sync_bytes_per_sec`](crate::NodeConfig)
//! so that a join or a return does not starve serving traffic.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mnemo_proto::v1::{self, internal_client::InternalClient};
use mnemo_store::ElementId;
use mnemo_store::reconcile::{ReconcileError, reconcile};
use tokio::sync::Notify;
use tonic::Status;

use crate::catchup::{Readiness, SettleKind};
use crate::convert::{element_from_wire, element_to_wire, summary_to_wire};
use crate::internal::MAX_COMPARE_IDS;
use crate::node::Node;
use crate::replication::chunks;

/// Comparisons one [`pull_difference`] makes while the peer's copy keeps
/// changing between its answer and the fetch.
const COMPARES: u32 = 3;
/// Element ids asked for in one `Fetch` call (the answer is also cut at
/// half the message limit, the rest asked for again).
const FETCH_IDS: usize = 1024;
/// Deadline of one listing of a peer's spaces.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of one anti-entropy call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Jobs run at once.
const WORKERS: usize = 2;
/// Catch-ups run at once by a settle.
const SETTLE_CONCURRENCY: usize = 4;
/// Attempts of a settle before the spaces it could not catch up stay stale
/// (and are caught up on demand).
const SETTLE_ATTEMPTS: u32 = 3;

/// One piece of anti-entropy work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Job {
    /// Compare `space` with `peer` (both ways).
    Repair {
        /// The space.
        space: String,
        /// The other holder.
        peer: String,
    },
    /// Sync `space` with every other live holder, then serve it.
    CatchUp {
        /// The space.
        space: String,
    },
    /// Give `space` to its holders, then drop it here.
    HandOver {
        /// The space.
        space: String,
    },
}

impl Job {
    /// `status`'s word for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Repair { .. } => "repair",
            Job::CatchUp { .. } => "catch-up",
            Job::HandOver { .. } => "hand-over",
        }
    }

    /// The space it is about.
    pub fn space(&self) -> &str {
        match self {
            Job::Repair { space, .. } | Job::CatchUp { space } | Job::HandOver { space } => space,
        }
    }

    /// The peer, for a repair.
    pub fn peer(&self) -> Option<&str> {
        match self {
            Job::Repair { peer, .. } => Some(peer),
            _ => None,
        }
    }
}

/// What one sync of one space with one peer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Reconciliation round trips.
    pub rounds: u32,
    /// Reconciliation bytes, both ways.
    pub reconcile_bytes: u64,
    /// Elements fetched from the peer.
    pub pulled: u64,
    /// Elements sent to the peer.
    pub pushed: u64,
    /// Encoded bytes of the elements moved, both ways.
    pub element_bytes: u64,
    /// Elements refused as invalid, by either side.
    pub refused: u64,
    /// Elements fetched that changed nothing here (this node's copy
    /// already had them, or something that outranks them).
    pub unchanged: u64,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Job>,
    queued: HashSet<Job>,
    active: HashSet<Job>,
}

/// Anti-entropy state of a node: the job queue, catch-up readiness, what
/// replication could not deliver, and the bandwidth cap.
pub struct AntiEntropy {
    pub(crate) readiness: Mutex<Readiness>,
    queue: Mutex<Queue>,
    wake: Notify,
    bandwidth: Bandwidth,
}

impl AntiEntropy {
    /// Nothing ready yet; moving at most `bytes_per_sec` of elements.
    pub fn new(bytes_per_sec: u64) -> Self {
        AntiEntropy {
            readiness: Mutex::new(Readiness::starting()),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            bandwidth: Bandwidth::new(bytes_per_sec),
        }
    }

    /// Queues `job` unless it is queued already. Catch-ups go first: a
    /// client waits on them.
    pub fn enqueue(&self, job: Job) {
        let first = matches!(job, Job::CatchUp { .. });
        self.queue_job(job, first);
    }

    /// Queues `job` behind everything queued, unless it is queued already.
    pub fn enqueue_last(&self, job: Job) {
        self.queue_job(job, false);
    }

    fn queue_job(&self, job: Job, first: bool) {
        let mut q = self.queue.lock().expect("lock poisoned");
        if q.queued.insert(job.clone()) {
            if first {
                q.pending.push_front(job);
            } else {
                q.pending.push_back(job);
            }
            drop(q);
            self.wake.notify_one();
        }
    }

    /// True outside a settle.
    pub fn settled(&self) -> bool {
        self.readiness.lock().expect("lock poisoned").settled()
    }

    /// Jobs queued or running, for `status`.
    pub fn jobs(&self) -> Vec<Job> {
        let q = self.queue.lock().expect("lock poisoned");
        let mut out: Vec<Job> = q.active.iter().chain(q.pending.iter()).cloned().collect();
        out.sort_by(|a, b| (a.space(), a.kind()).cmp(&(b.space(), b.kind())));
        out.dedup();
        out
    }

    fn next(&self) -> Option<Job> {
        let mut q = self.queue.lock().expect("lock poisoned");
        let job = q.pending.pop_front()?;
        q.queued.remove(&job);
        q.active.insert(job.clone());
        Some(job)
    }

    fn done(&self, job: &Job) {
        self.queue.lock().expect("lock poisoned").active.remove(job);
    }
}

/// Starts the workers and the periodic pass. They end when the node is
/// dropped.
pub fn spawn(node: &Arc<Node>) {
    for _ in 0..WORKERS {
        let weak = Arc::downgrade(node);
        tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                let Some(job) = node.sync.next() else {
                    // Wakes for new jobs, or now and then to notice the node
                    // is gone (this task must not keep it alive).
                    let _ = tokio::time::timeout(Duration::from_secs(1), node.sync.wake.notified())
                        .await;
                    continue;
                };
                let result = run(&node, &job).await;
                node.sync.done(&job);
                if let Err(e) = result {
                    tracing::debug!(?job, error = %e, "anti-entropy job failed");
                }
            }
        });
    }
    let weak = Arc::downgrade(node);
    let every = node.config.anti_entropy_interval;
    tokio::spawn(async move {
        let mut tick = 0usize;
        loop {
            tokio::time::sleep(every).await;
            let Some(node) = weak.upgrade() else { return };
            periodic(&node, tick);
            tick = tick.wrapping_add(1);
        }
    });
}

async fn run(node: &Node, job: &Job) -> Result<(), Status> {
    match job {
        Job::Repair { space, peer } => {
            if node.is_live(peer) {
                sync_space(node, space, peer).await?;
            }
            Ok(())
        }
        Job::CatchUp { space } => catch_up(node, space).await,
        Job::HandOver { space } => hand_over(node, space).await,
    }
}

/// One periodic pass: spaces whose catch-up failed are tried again; each
/// held space is compared with one other holder, chosen in turn; spaces no
/// longer held are handed over; undelivered writes to reachable peers are
/// repaired.
fn periodic(node: &Node, tick: usize) {
    let partitioned = node.router.partition().partitioned;
    if !partitioned {
        retry_stale(node);
    }
    for space in node.store.space_names() {
        let holders = node.holders_of(&space);
        if holders.iter().any(|h| h == &node.id) {
            let others: Vec<&String> = holders.iter().filter(|h| **h != node.id).collect();
            if !others.is_empty() {
                let peer = others[tick % others.len()].clone();
                node.sync.enqueue(Job::Repair { space, peer });
            }
        } else if !partitioned && node.sync.settled() {
            node.sync.enqueue(Job::HandOver { space });
        }
    }
    for (peer, spaces) in node.replicator.take_undelivered(|p| node.is_live(p)) {
        for space in spaces {
            node.sync.enqueue(Job::Repair {
                space,
                peer: peer.clone(),
            });
        }
    }
}

/// Queues a catch-up of each space this node holds and knows to be stale
/// (outside a settle, which catches them up itself). Without this, a space
/// whose last catch-up failed (a peer unreachable at the time) would stay
/// out of service here until a read of it came by.
///
/// They queue behind the work already waiting (repairs, hand-overs, the
/// catch-ups reads asked for): while a peer stays unreachable they keep
/// failing, and must not hold everything else up.
pub fn retry_stale(node: &Node) {
    let held: Vec<String> = {
        let mut readiness = node.sync.readiness.lock().expect("lock poisoned");
        let (held, gone): (Vec<String>, Vec<String>) = readiness
            .to_retry()
            .into_iter()
            .partition(|space| node.is_holder(space));
        for space in &gone {
            readiness.forget(space);
        }
        held
    };
    for space in held {
        node.sync.enqueue_last(Job::CatchUp { space });
    }
}

fn client(node: &Node, peer: &str) -> Result<InternalClient<tonic::transport::Channel>, Status> {
    let channel = crate::node::channel_to(&node.router, peer)
        .ok_or_else(|| Status::unavailable(format!("no route to {peer}")))?;
    Ok(crate::forward::internal_client(channel))
}

/// `message` as a request that gives up after `timeout`.
fn timed<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Compares `space` with `peer` and exchanges what differs, both ways.
pub async fn sync_space(node: &Node, space: &str, peer: &str) -> Result<SyncReport, Status> {
    sync(node, space, peer, true).await
}

/// Compares `space` with `peer` and fetches what it has and this node
/// lacks, sending nothing back. This is all a read needs before it can
/// answer with what `peer` holds. The elements `peer` lacks reach it by
/// replication or by the next sync, and the read does not wait for a
/// durable write on `peer`.
async fn pull_space(node: &Node, space: &str, peer: &str) -> Result<SyncReport, Status> {
    sync(node, space, peer, false).await
}

/// Fetches what `peer` has of `space` and this node lacks, sending
/// nothing back. This node sends its summary of the space by bucket,
/// `peer` answers with its ids in the buckets that differ
/// (`Internal.Compare`), and the ones missing here are fetched: two round
/// trips, one when the copies agree, each carrying the ids of the buckets
/// that differ, not the space. A difference too large for one answer, or
/// a peer that does not serve `Compare` (an older version), is reconciled
/// in full instead.
///
/// An id `peer` no longer has by the time it is fetched was replaced there
/// meanwhile (a newer version, a tombstone): the comparison is made again,
/// up to three times. Elements fetched that lose to this node's
/// (its recalls stamp memories, which other holders learn by anti-entropy)
/// get `peer` a repair, so that the same ids are not fetched again by
/// every read.
pub async fn pull_difference(node: &Node, space: &str, peer: &str) -> Result<SyncReport, Status> {
    let mut rpc = client(node, peer)?;
    let mut report = SyncReport::default();
    for _ in 0..COMPARES {
        let Some(ids) = compare(node, &mut rpc, space, peer).await? else {
            return pull_space(node, space, peer).await;
        };
        report.rounds += 1;
        let need = node.store.lacking(space, &ids);
        compared(if need.is_empty() {
            "complete"
        } else {
            "lacking"
        });
        let (pulled, unchanged) = (report.pulled, report.unchanged);
        pull(node, &mut rpc, space, peer, &need, &mut report).await?;
        if report.unchanged > unchanged {
            node.sync.enqueue(Job::Repair {
                space: space.to_owned(),
                peer: peer.to_owned(),
            });
        }
        if report.pulled - pulled == need.len() as u64 {
            return Ok(report);
        }
    }
    Err(Status::unavailable(format!(
        "the copy of space {space:?} on {peer} changed under each of {COMPARES} comparisons"
    )))
}

/// One `Compare` of `space` with `peer`: its ids in the buckets where the
/// two differ, or `None` when the space is to be reconciled in full
/// instead (too different, or `peer` does not serve `Compare`).
async fn compare(
    node: &Node,
    rpc: &mut InternalClient<tonic::transport::Channel>,
    space: &str,
    peer: &str,
) -> Result<Option<Vec<ElementId>>, Status> {
    let (digests, counts) = summary_to_wire(&node.store.summary(space));
    let request = v1::CompareRequest {
        space: space.to_owned(),
        digests,
        counts,
    };
    let answer = match rpc.compare(timed(request, CALL_TIMEOUT)).await {
        Ok(answer) => answer.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            compared("unsupported");
            return Ok(None);
        }
        Err(status) => return Err(status),
    };
    if answer.too_different {
        compared("too_different");
        return Ok(None);
    }
    if answer.ids.len() > MAX_COMPARE_IDS {
        return Err(Status::internal(format!(
            "{peer} answered a comparison with {} ids; at most {MAX_COMPARE_IDS} are expected",
            answer.ids.len()
        )));
    }
    let ids = answer
        .ids
        .iter()
        .map(|id| ElementId::try_from(id.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            Status::internal(format!("{peer} answered a comparison with a malformed id"))
        })?;
    Ok(Some(ids))
}

/// Counts one comparison by its `result` (`mnemo_antientropy_compares_total`).
fn compared(result: &'static str) {
    metrics::counter!("mnemo_antientropy_compares_total", "result" => result).increment(1);
}

/// [`sync_space`], or [`pull_space`] unless `push`.
async fn sync(node: &Node, space: &str, peer: &str, push: bool) -> Result<SyncReport, Status> {
    let mut rpc = client(node, peer)?;
    let view = node.store.reconciliation(space);
    let mut report = SyncReport::default();
    let diff = {
        let rpc = &rpc;
        reconcile(&view, |message| {
            let mut rpc = rpc.clone();
            async move {
                rpc.reconcile(timed(
                    v1::ReconcileRequest {
                        space: space.to_owned(),
                        message,
                    },
                    CALL_TIMEOUT,
                ))
                .await
                .map(|r| r.into_inner().message)
            }
        })
        .await
        .map_err(|e| match e {
            ReconcileError::Transport(status) => status,
            ReconcileError::Protocol(why) => Status::internal(why),
        })?
    };
    drop(view);
    report.rounds = diff.rounds;
    report.reconcile_bytes = diff.sent + diff.received;

    pull(node, &mut rpc, space, peer, &diff.need, &mut report).await?;
    if push {
        self::push(node, &mut rpc, space, peer, &diff.have, &mut report).await?;
    }
    metrics::counter!("mnemo_antientropy_syncs_total").increment(1);
    metrics::counter!("mnemo_antientropy_reconcile_bytes_total").increment(report.reconcile_bytes);
    metrics::counter!("mnemo_antientropy_element_bytes_total").increment(report.element_bytes);
    metrics::counter!("mnemo_antientropy_elements_total", "direction" => "pulled")
        .increment(report.pulled);
    metrics::counter!("mnemo_antientropy_elements_total", "direction" => "pushed")
        .increment(report.pushed);
    if report.pulled + report.pushed > 0 {
        tracing::debug!(%space, %peer, ?report, "anti-entropy moved elements");
    }
    Ok(report)
}

/// Fetches the elements `need` from `peer` and merges them here.
async fn pull(
    node: &Node,
    rpc: &mut InternalClient<tonic::transport::Channel>,
    space: &str,
    peer: &str,
    need: &[ElementId],
    report: &mut SyncReport,
) -> Result<(), Status> {
    let mut wanted = need;
    while !wanted.is_empty() {
        let ask = &wanted[..wanted.len().min(FETCH_IDS)];
        let answer = rpc
            .fetch(timed(
                v1::FetchRequest {
                    space: space.to_owned(),
                    ids: ask.iter().map(|id| id.to_vec()).collect(),
                },
                CALL_TIMEOUT,
            ))
            .await?
            .into_inner();
        let (got, answered) = (answer.elements.len(), answer.answered as usize);
        let bytes: usize = answer
            .elements
            .iter()
            .map(prost::Message::encoded_len)
            .sum();
        node.sync.bandwidth.take(bytes as u64).await;
        report.element_bytes += bytes as u64;
        report.pulled += got as u64;
        let elements: Vec<_> = answer
            .elements
            .into_iter()
            .filter_map(element_from_wire)
            .collect();
        if !elements.is_empty() {
            let merged = node
                .store
                .merge(space, elements)
                .await
                .map_err(|e| Status::from(crate::error::NodeError::from(e)))?;
            report.unchanged += u64::from(merged.unchanged);
            if !merged.refused.is_empty() {
                report.refused += merged.refused.len() as u64;
                tracing::warn!(%space, %peer, refused = ?merged.refused, "refused elements fetched from a peer");
            }
        }
        // The peer answers a prefix (cut by size); ask again for the rest.
        // Ids it no longer has (changed meanwhile) are left to the next sync.
        if answered == 0 {
            break;
        }
        wanted = &wanted[answered.min(ask.len())..];
    }

    Ok(())
}

/// Sends the elements `have` to `peer`.
async fn push(
    node: &Node,
    rpc: &mut InternalClient<tonic::transport::Channel>,
    space: &str,
    peer: &str,
    have: &[ElementId],
    report: &mut SyncReport,
) -> Result<(), Status> {
    let elements = node.store.elements(space, have);
    for chunk in chunks(elements.into_iter().map(element_to_wire)) {
        let bytes: usize = chunk.iter().map(prost::Message::encoded_len).sum();
        node.sync.bandwidth.take(bytes as u64).await;
        report.element_bytes += bytes as u64;
        report.pushed += chunk.len() as u64;
        let answer = rpc
            .merge(timed(
                v1::MergeRequest {
                    space: space.to_owned(),
                    from_node: node.id.clone(),
                    elements: chunk,
                },
                CALL_TIMEOUT,
            ))
            .await?
            .into_inner();
        if !answer.refused.is_empty() {
            report.refused += answer.refused.len() as u64;
            tracing::warn!(%space, %peer, refused = ?answer.refused, "peer refused elements sent by anti-entropy");
        }
    }
    Ok(())
}

/// Syncs `space` with every other live holder (and whoever held it before
/// this node did); once each answered, reads of it may be served here.
pub async fn catch_up(node: &Node, space: &str) -> Result<(), Status> {
    let outcome = try_catch_up(node, space).await;
    let label = if outcome.is_ok() {
        "caught_up"
    } else {
        "failed"
    };
    metrics::counter!("mnemo_antientropy_catchups_total", "outcome" => label).increment(1);
    outcome
}

async fn try_catch_up(node: &Node, space: &str) -> Result<(), Status> {
    let generation = node
        .sync
        .readiness
        .lock()
        .expect("lock poisoned")
        .generation();
    let failed = |e: Status| {
        node.sync
            .readiness
            .lock()
            .expect("lock poisoned")
            .failed(space, generation);
        Err(e)
    };
    if let Some(why) = node.placed_only_on_down_nodes(space) {
        return failed(Status::unavailable(why));
    }
    for peer in node.sources_of(space) {
        if let Err(e) = sync_space(node, space, &peer).await {
            return failed(e);
        }
    }
    let stand_in = node.stands_in_for(space);
    node.sync
        .readiness
        .lock()
        .expect("lock poisoned")
        .caught_up(space, stand_in, generation);
    Ok(())
}

/// Gives `space` to each of its current holders; drops it here once all of
/// them have everything this node has, unless this node became a holder
/// again meanwhile. "Everything" is checked by digest: a pass of syncs that
/// starts and ends with the same digest here, and a drop that happens only
/// if the digest is still that one, so nothing that arrived meanwhile (a
/// write from a node with an older view) is lost.
async fn hand_over(node: &Node, space: &str) -> Result<(), Status> {
    const PASSES: usize = 3;
    for _ in 0..PASSES {
        let holders = node.holders_of(space);
        if node.is_holder(space) || holders.is_empty() || node.router.partition().partitioned {
            return Ok(()); // a holder again, nobody to give it to, or cut off
        }
        let Some(before) = node.store.stats(space).map(|s| s.digest) else {
            return Ok(());
        };
        for peer in &holders {
            let report = sync_space(node, space, peer).await?;
            if report.refused > 0 {
                return Err(Status::failed_precondition(format!(
                    "{peer} refused {} elements of {space:?}; keeping the space here",
                    report.refused
                )));
            }
        }
        if node.store.stats(space).map(|s| s.digest) != Some(before) || node.is_holder(space) {
            continue;
        }
        let dropped = node
            .store
            .drop_space(space, before)
            .await
            .map_err(|e| Status::from(crate::error::NodeError::from(e)))?;
        if dropped {
            tracing::info!(%space, to = ?holders, "handed space over and dropped it");
            metrics::counter!("mnemo_antientropy_handed_over_total").increment(1);
            return Ok(());
        }
    }
    Ok(()) // still changing; the next periodic pass tries again
}

/// Hands every space this node has to the holders it would have without
/// this node (a graceful leave). Returns how many spaces went.
pub async fn hand_over_all(node: &Node) -> Result<u64, Status> {
    let mut count = 0;
    for space in node.store.space_names() {
        for peer in node.sources_of(&space) {
            sync_space(node, &space, &peer).await?;
        }
        count += 1;
    }
    Ok(count)
}

/// Lists the spaces of every live peer and catches up each one this node
/// holds, as [`crate::catchup`] describes. A newer settle supersedes this one.
pub async fn settle(node: Arc<Node>, kind: SettleKind) {
    let generation = node
        .sync
        .readiness
        .lock()
        .expect("lock poisoned")
        .begin(kind);
    let started = tokio::time::Instant::now();
    let mut failed: Vec<String>;
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            let pause = Duration::from_millis(200) * attempt.min(25);
            tokio::time::sleep(pause).await;
        }
        attempt += 1;
        if !node
            .sync
            .readiness
            .lock()
            .expect("lock poisoned")
            .current(generation)
        {
            return;
        }
        let mut names: HashSet<String> = node.store.space_names().into_iter().collect();
        // A live peer that could not list its spaces may hold some nobody
        // else listed: the settle waits for it (unknown spaces stay refused)
        // for SETTLE_ATTEMPTS passes, or until membership drops it (which
        // starts a new settle). A peer that stays unreachable while
        // membership still hears from it (a one-way partition) must not hold
        // every space hostage: after that, its spaces are found on their
        // other holders, which did list (RF > 1).
        let mut unlisted = 0;
        for peer in node.live_peers() {
            let listed = match client(&node, &peer) {
                Ok(mut rpc) => rpc
                    .spaces(timed(v1::SpacesRequest {}, LIST_TIMEOUT))
                    .await
                    .map(|r| r.into_inner().spaces),
                Err(e) => Err(e),
            };
            match listed {
                Ok(spaces) => names.extend(spaces),
                Err(e) => {
                    unlisted += 1;
                    tracing::debug!(%peer, error = %e, "cannot list a peer's spaces");
                }
            }
        }
        let todo: Vec<String> = names
            .into_iter()
            .filter(|s| node.is_holder(s) && !node.ready(s))
            .collect();
        let node_ref = &node;
        failed = futures_util::stream::iter(todo)
            .map(|space: String| async move {
                match catch_up(node_ref, &space).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::debug!(%space, error = %e, "catch-up failed");
                        Some(space)
                    }
                }
            })
            .buffer_unordered(SETTLE_CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        if (unlisted == 0 && failed.is_empty()) || attempt >= SETTLE_ATTEMPTS {
            if unlisted > 0 {
                tracing::warn!(unlisted, "settled without every live peer's list of spaces");
            }
            break;
        }
    }
    let ended = node
        .sync
        .readiness
        .lock()
        .expect("lock poisoned")
        .end(generation, failed.iter().cloned());
    if ended {
        tracing::info!(
            ?kind,
            elapsed_ms = started.elapsed().as_millis() as u64,
            stale = failed.len(),
            "caught up with the cluster"
        );
        for space in failed {
            node.sync.enqueue(Job::CatchUp { space });
        }
    }
}

/// A token bucket over bytes, refilled at `rate` per second, holding at
/// most one second's worth. `take` waits until the bytes are available.
struct Bandwidth {
    rate: f64,
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl Bandwidth {
    fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Bandwidth {
            rate,
            state: tokio::sync::Mutex::new((rate, tokio::time::Instant::now())),
        }
    }

    async fn take(&self, bytes: u64) {
        let mut state = self.state.lock().await;
        let now = tokio::time::Instant::now();
        let (tokens, at) = &mut *state;
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        *tokens -= bytes as f64;
        if *tokens < 0.0 {
            let wait = Duration::from_secs_f64(-*tokens / self.rate);
            // Holding the lock while waiting queues the other takers behind.
            tokio::time::sleep(wait).await;
        }
    }
}
