//! Replication: the fast path. Every write a node takes goes at once to the
//! space's other holders as the elements it stands for (see
//! [`mnemo_store::set`]), and each holder answers once they are durable
//! there.
//!
//! Nothing here is ordered or positional: elements merge in any order, any
//! number of times, so a resend, a reordering or a holder that restarted
//! cannot make a replica skip a write. What the fast path fails to deliver
//! (a holder down, a queue over its bound) is handed to anti-entropy
//! ([`crate::antientropy`]), which is the truth: it finds every difference
//! between two holders whatever caused it.
//!
//! One worker per peer drains that peer's queue in rounds of its oldest
//! writes (a few calls' worth), sending what a round holds for a space in
//! `Merge` calls under the message limit, the calls for every space at
//! once (so the peer group-commits them together), and acknowledges each
//! write it carried. A peer's queue is bounded, in writes and in bytes
//! (the round in flight included); a write beyond the bound is left to
//! anti-entropy. `ack=quorum` waits on those
//! acknowledgements, so it counts exactly the holders that durably applied
//! *that* write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mnemo_proto::v1;
use mnemo_store::Element;
use tokio::sync::{Notify, mpsc};
use tonic::transport::Channel;

use crate::config::MAX_MESSAGE_BYTES;
use crate::convert::element_to_wire;

/// Largest encoded `Merge` call, half the gRPC message limit.
pub(crate) const MAX_CALL_BYTES: usize = MAX_MESSAGE_BYTES / 2;
/// Most writes, and bytes of them (roughly), queued for one peer. A write
/// that would go beyond either is not queued: anti-entropy repairs its
/// space on that peer instead. So a peer that answers, only slower than
/// writes come, holds its sender's memory to this, whatever the rate.
const BOUNDS: Bounds = Bounds {
    writes: 100_000,
    bytes: 64 << 20,
};
/// Most bytes of writes one round sends a peer (the rest wait for the
/// next round): a few calls' worth, so that the sender holds little more
/// than its bound, and the oldest writes are answered first.
const BATCH_BYTES: usize = 4 * MAX_CALL_BYTES;
/// Consecutive failed sends after which a peer's queue is handed to
/// anti-entropy rather than retried.
const MAX_FAILURES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Deadline of one `Merge` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds a channel to a node by id (the router's pool).
pub type ChannelFor = Arc<dyn Fn(&str) -> Option<Channel> + Send + Sync>;

/// Ships writes to the other holders of their spaces.
pub struct Replicator {
    node_id: String,
    channel_for: ChannelFor,
    /// Where the per-peer workers run: the runtime the replicator was made
    /// on, which lives as long as the node (not a serving thread's, which
    /// ends while the node stops; see `crate::serving`).
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    /// Per peer, the spaces whose writes did not reach it: anti-entropy
    /// repairs them once the peer is reachable.
    undelivered: Mutex<HashMap<String, HashSet<String>>>,
    bounds: Bounds,
}

/// How much one peer's queue may hold.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    writes: usize,
    bytes: usize,
}

struct Push {
    space: String,
    elements: Vec<Element>,
    ack: Option<mpsc::Sender<()>>,
    /// Roughly what the elements take, counted against [`Bounds::bytes`].
    bytes: usize,
}

/// What a write's elements take, roughly: their encoded size (what the
/// strings, embeddings and merged inputs come to) and a little for the
/// rest.
fn bytes_of(elements: &[Element]) -> usize {
    elements
        .iter()
        .map(|e| match e {
            Element::Memory(m) => 64 + prost::Message::encoded_len(m),
            Element::Tombstone(id) => 32 + id.len(),
        })
        .sum()
}

/// One peer's pushes in order, their bytes, and the bytes and writes of
/// the batch being sent (which count against the bound until its round
/// ends, so that what fails and comes back fits again).
#[derive(Default)]
struct Queue {
    pushes: VecDeque<Push>,
    bytes: usize,
    in_flight: usize,
    in_flight_writes: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.pushes.len()
    }

    /// Whether `push` fits within `bounds`.
    fn has_room(&self, push: &Push, bounds: Bounds) -> bool {
        self.pushes.len() + self.in_flight_writes < bounds.writes
            && self.bytes + self.in_flight + push.bytes <= bounds.bytes
    }

    fn over(&self, bounds: Bounds) -> bool {
        self.pushes.len() > bounds.writes || self.bytes > bounds.bytes
    }

    fn push_back(&mut self, push: Push) {
        self.bytes += push.bytes;
        self.pushes.push_back(push);
    }

    fn push_front(&mut self, push: Push) {
        self.bytes += push.bytes;
        self.pushes.push_front(push);
    }

    fn take(&mut self) -> VecDeque<Push> {
        self.bytes = 0;
        std::mem::take(&mut self.pushes)
    }

    /// Nothing queued, nothing on its way.
    fn is_idle(&self) -> bool {
        self.pushes.is_empty() && self.in_flight_writes == 0
    }

    /// The round in flight ended; what `failed` goes back to the front, in
    /// order, in the same step (so no moment looks idle in between).
    fn end_round(&mut self, failed: Vec<Push>) {
        self.in_flight = 0;
        self.in_flight_writes = 0;
        for push in failed.into_iter().rev() {
            self.push_front(push);
        }
    }

    /// The oldest pushes, up to [`BATCH_BYTES`] (at least one), as the
    /// batch in flight.
    fn take_batch(&mut self) -> Vec<Push> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(push) = self.pushes.front() {
            if !batch.is_empty() && bytes + push.bytes > BATCH_BYTES {
                break;
            }
            bytes += push.bytes;
            batch.extend(self.pushes.pop_front());
        }
        self.bytes -= bytes;
        self.in_flight = bytes;
        self.in_flight_writes = batch.len();
        batch
    }
}

struct Peer {
    queue: Mutex<Queue>,
    wake: Notify,
    refused: AtomicU64,
}

/// One peer's replication, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// Peer node id.
    pub node: String,
    /// Writes queued for it.
    pub pending: u64,
    /// Elements it refused as invalid.
    pub refused: u64,
}

/// The acknowledgements of one write's holders.
pub struct Acks {
    rx: mpsc::Receiver<()>,
}

impl Acks {
    /// Waits until `needed` holders confirmed the write, or `timeout`.
    /// `Err(n)`: only `n` had.
    pub async fn wait(&mut self, needed: usize, timeout: Duration) -> Result<(), usize> {
        let mut have = 0;
        let deadline = tokio::time::Instant::now() + timeout;
        while have < needed {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(())) => have += 1,
                // Every holder answered or gave up; or the time is up.
                Ok(None) | Err(_) => return Err(have),
            }
        }
        Ok(())
    }
}

impl Replicator {
    /// A replicator of node `node_id`, reaching peers through `channel_for`.
    /// Must run inside the node's main runtime (its workers run there).
    pub fn new(node_id: String, channel_for: ChannelFor) -> Arc<Self> {
        Self::bounded(node_id, channel_for, BOUNDS)
    }

    fn bounded(node_id: String, channel_for: ChannelFor, bounds: Bounds) -> Arc<Self> {
        Arc::new(Replicator {
            node_id,
            channel_for,
            runtime: tokio::runtime::Handle::current(),
            peers: Mutex::new(HashMap::new()),
            undelivered: Mutex::new(HashMap::new()),
            bounds,
        })
    }

    /// Per peer, how many spaces wait for a repair.
    pub fn to_repair(&self) -> HashMap<String, usize> {
        self.undelivered
            .lock()
            .expect("lock poisoned")
            .iter()
            .map(|(peer, spaces)| (peer.clone(), spaces.len()))
            .collect()
    }

    /// Takes the undelivered spaces of the peers `reachable` accepts, for
    /// anti-entropy to repair.
    pub fn take_undelivered(
        &self,
        reachable: impl Fn(&str) -> bool,
    ) -> Vec<(String, HashSet<String>)> {
        let mut undelivered = self.undelivered.lock().expect("lock poisoned");
        let peers: Vec<String> = undelivered
            .keys()
            .filter(|p| reachable(p))
            .cloned()
            .collect();
        peers
            .into_iter()
            .filter_map(|p| undelivered.remove_entry(&p))
            .collect()
    }

    /// Sends a write's `elements` of `space` to each of `holders`. The
    /// returned [`Acks`] hears from each holder that applied them. A holder
    /// whose queue is full does not get the write this way (nor count
    /// toward its quorum): anti-entropy repairs the space there.
    pub fn send(self: &Arc<Self>, space: &str, elements: &[Element], holders: &[String]) -> Acks {
        let (tx, rx) = mpsc::channel(holders.len().max(1));
        let bytes = bytes_of(elements);
        for holder in holders {
            let push = Push {
                space: space.to_owned(),
                elements: elements.to_vec(),
                ack: Some(tx.clone()),
                bytes,
            };
            // Under the peers' lock, as `forget_peer` hands a queue over: a
            // write lands in a queue that is sent or handed to
            // anti-entropy, never in one a forgotten peer left behind.
            let mut peers = self.peers.lock().expect("lock poisoned");
            let peer = self.peer_in(&mut peers, holder);
            let mut queue = peer.queue.lock().expect("lock poisoned");
            if !queue.has_room(&push, self.bounds) {
                drop((queue, peers));
                self.leave_to_antientropy(holder, std::iter::once(push.space));
                continue;
            }
            queue.push_back(push);
            drop((queue, peers));
            peer.wake.notify_one();
        }
        Acks { rx }
    }

    /// `node`'s entry in `peers` (the locked map), made with its worker
    /// if there is none.
    fn peer_in(self: &Arc<Self>, peers: &mut HashMap<String, Arc<Peer>>, node: &str) -> Arc<Peer> {
        if let Some(p) = peers.get(node) {
            return Arc::clone(p);
        }
        let peer = Arc::new(Peer {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            refused: AtomicU64::new(0),
        });
        peers.insert(node.to_owned(), Arc::clone(&peer));
        let (this, worker_peer, id) = (Arc::clone(self), Arc::clone(&peer), node.to_owned());
        self.runtime
            .spawn(async move { this.work(id, worker_peer).await });
        peer
    }

    /// Stops sending to a node that left; what was queued goes to
    /// anti-entropy (which drops it if the node is gone for good).
    pub fn forget_peer(&self, node: &str) {
        let mut peers = self.peers.lock().expect("lock poisoned");
        if let Some(peer) = peers.remove(node) {
            // Under the peers' lock: no write joins the queue while it is
            // handed over (see `send`).
            self.give_up(node, &peer);
            // Its worker wakes, finds itself gone and ends.
            peer.wake.notify_one();
        }
    }

    /// Returns once nothing is queued for or on its way to any peer (sent,
    /// or handed to anti-entropy).
    pub async fn drained(&self) {
        let busy = || {
            let peers = self.peers.lock().expect("lock poisoned");
            peers
                .values()
                .any(|p| !p.queue.lock().expect("lock poisoned").is_idle())
        };
        while busy() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every peer's queue and refusals, sorted by node.
    pub fn stats(&self) -> Vec<PeerStats> {
        let peers = self.peers.lock().expect("lock poisoned");
        let mut out: Vec<PeerStats> = peers
            .iter()
            .map(|(node, p)| PeerStats {
                node: node.clone(),
                pending: p.queue.lock().expect("lock poisoned").len() as u64,
                refused: p.refused.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// Hands everything queued for `node` to anti-entropy; its writers stop
    /// waiting for it.
    fn give_up(&self, node: &str, peer: &Peer) {
        let dropped = peer.queue.lock().expect("lock poisoned").take();
        self.leave_to_antientropy(node, dropped.into_iter().map(|p| p.space));
    }

    /// Leaves writes of `spaces` (one per write) to anti-entropy's repair
    /// of them on `node`.
    fn leave_to_antientropy(&self, node: &str, spaces: impl Iterator<Item = String>) {
        let spaces: Vec<String> = spaces.collect();
        if spaces.is_empty() {
            return;
        }
        let writes = spaces.len();
        self.undelivered
            .lock()
            .expect("lock poisoned")
            .entry(node.to_owned())
            .or_default()
            .extend(spaces);
        metrics::counter!("mnemo_replication_undelivered_total").increment(writes as u64);
        tracing::debug!(peer = node, writes, "writes left to anti-entropy");
    }

    async fn work(self: Arc<Self>, node: String, peer: Arc<Peer>) {
        let mut failures = 0u32;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let batch = take_batch(&peer);
            if batch.is_empty() {
                peer.wake.notified().await;
                let current = self
                    .peers
                    .lock()
                    .expect("lock poisoned")
                    .get(&node)
                    .is_some_and(|p| Arc::ptr_eq(p, &peer));
                if !current {
                    return; // forgotten (perhaps replaced by a new worker)
                }
                continue;
            }
            // Every space at once: the peer's writer takes them in one
            // batch and one sync, rather than one after another.
            let delivered =
                futures_util::future::join_all(batch.into_iter().map(|(space, pushes)| async {
                    let outcome = self.deliver(&node, &space, &pushes).await;
                    (space, pushes, outcome)
                }))
                .await;
            let mut failed: Vec<Push> = Vec::new();
            for (space, pushes, outcome) in delivered {
                match outcome {
                    Ok((refused, refused_ids)) => {
                        if !refused.is_empty() {
                            peer.refused
                                .fetch_add(refused.len() as u64, Ordering::Relaxed);
                            metrics::counter!("mnemo_replication_refused_total")
                                .increment(refused.len() as u64);
                            tracing::warn!(peer = %node, %space, refused = ?refused, "peer refused elements; the rest of the space replicated");
                        }
                        // A holder that refused part of a write did not apply
                        // that write: it does not count toward its quorum.
                        for push in pushes {
                            let applied = !push
                                .elements
                                .iter()
                                .any(|e| refused_ids.iter().any(|id| id == e.id()));
                            if let (true, Some(ack)) = (applied, push.ack) {
                                let _ = ack.try_send(());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = %node, %space, error = %e, "replication attempt failed");
                        metrics::counter!("mnemo_replication_errors_total").increment(1);
                        failed.extend(pushes);
                    }
                }
            }
            let failed_any = !failed.is_empty();
            peer.queue.lock().expect("lock poisoned").end_round(failed);
            if !failed_any {
                failures = 0;
                backoff = FIRST_BACKOFF;
                continue;
            }
            failures += 1;
            if failures >= MAX_FAILURES
                || peer.queue.lock().expect("lock poisoned").over(self.bounds)
            {
                self.give_up(&node, &peer);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sends one space's queued elements in calls under the size limit.
    /// Returns what the peer refused: why, and the memory ids.
    async fn deliver(
        &self,
        node: &str,
        space: &str,
        pushes: &[Push],
    ) -> Result<(Vec<String>, Vec<String>), tonic::Status> {
        let channel = (self.channel_for)(node)
            .ok_or_else(|| tonic::Status::unavailable(format!("no route to {node}")))?;
        let mut client = crate::forward::internal_client(channel);
        let elements = pushes.iter().flat_map(|p| p.elements.iter().cloned());
        let (mut refused, mut refused_ids) = (Vec::new(), Vec::new());
        for chunk in chunks(elements.map(element_to_wire)) {
            let mut request = tonic::Request::new(v1::MergeRequest {
                space: space.to_owned(),
                from_node: self.node_id.clone(),
                elements: chunk,
            });
            request.set_timeout(CALL_TIMEOUT);
            let answer = client.merge(request).await?.into_inner();
            refused.extend(answer.refused);
            refused_ids.extend(answer.refused_ids);
        }
        Ok((refused, refused_ids))
    }
}

/// The next batch (see [`Queue::take_batch`]), grouped by space in order
/// of first appearance.
fn take_batch(peer: &Peer) -> Vec<(String, Vec<Push>)> {
    let drained = peer.queue.lock().expect("lock poisoned").take_batch();
    let mut out: Vec<(String, Vec<Push>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for push in drained {
        if let Some(&i) = at.get(&push.space) {
            out[i].1.push(push);
        } else {
            at.insert(push.space.clone(), out.len());
            out.push((push.space.clone(), vec![push]));
        }
    }
    out
}

/// Splits wire elements into groups whose encoded size stays under
/// [`MAX_CALL_BYTES`] (one element always goes, however large).
pub(crate) fn chunks(elements: impl Iterator<Item = v1::Element>) -> Vec<Vec<v1::Element>> {
    let mut out: Vec<Vec<v1::Element>> = Vec::new();
    let mut bytes = 0;
    for e in elements {
        let size = prost::Message::encoded_len(&e) + 8;
        match out.last_mut() {
            Some(last) if bytes + size <= MAX_CALL_BYTES => last.push(e),
            _ => {
                out.push(vec![e]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_store::memory::Memory;
    use tokio::sync::mpsc::error::TryRecvError;

    fn memory(id: &str, content: usize) -> Vec<Element> {
        vec![Element::Memory(Memory {
            id: id.into(),
            content: "x".repeat(content),
            ..Default::default()
        })]
    }

    /// A replicator whose peer `n2` cannot be reached. Its worker runs
    /// only when the test awaits, so what `send` queues stays queued.
    fn unreachable(bounds: Bounds) -> (Arc<Replicator>, Vec<String>) {
        let (r, n2, _) = counting(bounds);
        (r, n2)
    }

    /// [`unreachable`], and how many times its worker tried to reach `n2`.
    fn counting(bounds: Bounds) -> (Arc<Replicator>, Vec<String>, Arc<AtomicU64>) {
        let tries = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&tries);
        let channel_for: ChannelFor = Arc::new(move |_: &str| {
            counted.fetch_add(1, Ordering::Relaxed);
            None
        });
        let r = Replicator::bounded("n1".into(), channel_for, bounds);
        (r, vec!["n2".to_owned()], tries)
    }

    fn pending(r: &Replicator) -> u64 {
        r.stats().iter().map(|p| p.pending).sum()
    }

    #[tokio::test]
    async fn a_write_beyond_a_full_queue_is_left_to_anti_entropy_and_not_acknowledged() {
        let (r, n2) = unreachable(Bounds {
            writes: 3,
            bytes: 1 << 20,
        });
        let mut queued: Vec<Acks> = (0..3)
            .map(|i| r.send("a", &memory(&format!("m{i}"), 10), &n2))
            .collect();
        assert_eq!(pending(&r), 3);
        assert!(r.to_repair().is_empty());
        let mut over = r.send("b", &memory("m3", 10), &n2);
        assert_eq!(pending(&r), 3, "the fourth write is not queued");
        assert_eq!(r.to_repair(), HashMap::from([("n2".to_owned(), 1)]));
        // No holder can confirm it (its quorum counts n2 out), while the
        // queued ones may still be.
        assert!(matches!(
            over.rx.try_recv(),
            Err(TryRecvError::Disconnected)
        ));
        assert!(matches!(queued[0].rx.try_recv(), Err(TryRecvError::Empty)));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_too() {
        let (r, n2) = unreachable(Bounds {
            writes: 100,
            bytes: 1000,
        });
        r.send("a", &memory("big-1", 600), &n2);
        r.send("b", &memory("big-2", 600), &n2);
        assert_eq!(pending(&r), 1, "600 + 600 bytes do not fit in 1000");
        assert_eq!(r.to_repair(), HashMap::from([("n2".to_owned(), 1)]));
        r.send("a", &memory("small", 10), &n2);
        assert_eq!(pending(&r), 2, "a small write still fits");
    }

    fn push(bytes: usize) -> Push {
        Push {
            space: "a".into(),
            elements: Vec::new(),
            ack: None,
            bytes,
        }
    }

    #[test]
    fn a_round_takes_the_oldest_writes_up_to_its_budget_and_they_still_count() {
        let mut q = Queue::default();
        for _ in 0..4 {
            q.push_back(push(3 << 20));
        }
        let batch = q.take_batch();
        assert_eq!(batch.len(), 2, "6 MiB fit in a round of 8 MiB, 9 do not");
        assert_eq!((q.len(), q.bytes, q.in_flight), (2, 6 << 20, 6 << 20));
        let bounds = Bounds {
            writes: 100,
            bytes: 64 << 20,
        };
        assert!(q.has_room(&push(52 << 20), bounds));
        assert!(
            !q.has_room(&push(53 << 20), bounds),
            "the round in flight counts against the bound"
        );
        // Writes in flight count too: 2 queued and 2 on their way fill a
        // bound of 4, so the 2 coming back after a failure fit again.
        let four = Bounds {
            writes: 4,
            bytes: 64 << 20,
        };
        assert!(!q.has_room(&push(1), four));
        // One write larger than a round still goes, alone.
        let mut q = Queue::default();
        q.push_back(push(20 << 20));
        q.push_back(push(1));
        assert_eq!(q.take_batch().len(), 1);
    }

    #[tokio::test]
    async fn writes_that_failed_to_go_count_against_the_bound_again() {
        let (r, n2, tries) = counting(Bounds {
            writes: 100,
            bytes: 1000,
        });
        r.send("a", &memory("first", 500), &n2);
        // The worker takes it, fails to reach n2, puts it back and waits.
        tokio::task::yield_now().await;
        assert_eq!(tries.load(Ordering::Relaxed), 1, "one round was tried");
        assert_eq!(pending(&r), 1);
        r.send("b", &memory("second", 500), &n2);
        assert_eq!(pending(&r), 1, "the first is back in the queue: no room");
        assert_eq!(r.to_repair(), HashMap::from([("n2".to_owned(), 1)]));
    }

    #[tokio::test]
    async fn drained_waits_for_the_round_in_flight() {
        use futures_util::FutureExt;
        // A peer that takes the connection and never answers: the round
        // stays in flight (until its call times out).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect_lazy();
        let r = Replicator::bounded(
            "n1".into(),
            Arc::new(move |_: &str| Some(channel.clone())),
            BOUNDS,
        );
        r.send("a", &memory("m", 10), &["n2".to_owned()]);
        // The worker takes the write and waits on the call.
        let in_flight = || {
            r.peers.lock().unwrap()["n2"]
                .queue
                .lock()
                .unwrap()
                .in_flight
        };
        for _ in 0..100 {
            if in_flight() > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(in_flight() > 0, "the worker took the write");
        assert_eq!(pending(&r), 0, "nothing is queued any more");
        assert!(
            r.drained().now_or_never().is_none(),
            "but the write is not delivered yet"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_given_up_takes_writes_again() {
        let (r, n2) = unreachable(Bounds {
            writes: 2,
            bytes: 1 << 20,
        });
        for i in 0..3 {
            r.send("a", &memory(&format!("m{i}"), 10), &n2);
        }
        assert_eq!(pending(&r), 2);
        // The worker fails to reach n2 until it hands the queue over.
        r.drained().await;
        assert_eq!(r.to_repair(), HashMap::from([("n2".to_owned(), 1)]));
        r.send("b", &memory("m3", 10), &n2);
        assert_eq!(pending(&r), 1, "room again once the queue was handed over");
        let taken = r.take_undelivered(|_| true);
        assert_eq!(
            taken,
            vec![("n2".to_owned(), HashSet::from(["a".to_owned()]))]
        );
    }
}
