//! The tokio adapter: one task owns foca, the UDP socket and the timers.
//!
//! foca is sans-I/O: it tells us "send these bytes to member M" and "hand
//! me this timer event after D"; this module does exactly that and nothing
//! else. One task `select!`s over the socket, a timer heap, commands from
//! the handle and a 250 ms tick (the partition detector's hysteresis needs
//! time to pass even when nothing else happens). Timer events are kept in a
//! heap ordered by deadline, then submission order, and delivered from the
//! same task, which keeps foca's required ordering (caio/foca#26).
//!
//! A second small task resolves the seed names every
//! [`MembershipConfig::seed_retry`] (5 s; 100 ms at first, doubling, so
//! nodes started together find each other at once) and hands the addresses to the
//! main task, which announces to every seed that is not a reachable member.
//! Once all seeds are members this costs nothing; while a seed is down it
//! costs one datagram per seed per period, and a restarted seed (even on a
//! new IP behind the same DNS name) is found again.
//!
//! Wire format: one tag byte, then the payload. `TAG_FOCA` (1): a foca packet
//! (postcard codec). `TAG_LEAVE` (2): a leave notice carrying the leaving
//! identity, sent directly to every reachable member before foca's own
//! leave gossip, so peers can tell `Left` from `Down`.
//!
//! With a [`MembershipConfig::gossip_key`] every datagram (tag byte and
//! payload) is sealed ([`crate::seal`]): a 32-byte HMAC follows it, and a
//! received datagram is looked at only if its HMAC verifies. Anything else
//! is dropped, counted (`mnemo_gossip_rejected_total`,
//! [`MembershipHandle::rejected_datagrams`]) and logged at debug level, with
//! a warning at most once a minute. Without a key there is no
//! authentication: run such a cluster on a trusted network only. There is
//! never encryption.
//!
//! **Readiness.** The node must start membership only after its gRPC server
//! is listening on the same host:port. Peers learn about a node only through
//! gossip from that node, so a member seen `Alive` is ready to serve.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Codec, Foca, Member, NoCustomBroadcast, PostcardCodec, Timer};
use rand010::SeedableRng as _;
use rand010::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::MembershipConfig;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::partition::{PartitionDetector, PartitionState};
use crate::seal::{self, GossipKey};
use crate::view::{ClusterView, MemberInfo, MemberState, merge_members};

/// Tag byte of a foca packet.
const TAG_FOCA: u8 = 1;
/// Tag byte of a leave notice.
const TAG_LEAVE: u8 = 2;
/// How often the view (and the partition detector) is re-evaluated even
/// when no packet or timer arrived.
const TICK: Duration = Duration::from_millis(250);
/// Rejected datagrams are logged at debug level; a warning (with the running
/// count) is emitted at most this often, so a flood cannot flood the log.
const REJECT_WARN_EVERY: Duration = Duration::from_secs(60);

type FocaInstance = Foca<Identity, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// Entry point: starts SWIM membership. See the module docs.
#[derive(Debug)]
pub struct Membership;

impl Membership {
    /// Binds the gossip socket, starts the membership task and announces to
    /// the seeds. Returns once the socket is bound; joining happens in the
    /// background — watch [`MembershipHandle::subscribe`].
    ///
    /// Must be called from within a tokio runtime.
    pub async fn start(config: MembershipConfig) -> Result<MembershipHandle> {
        config.validate().map_err(Error::InvalidConfig)?;
        if config.advertise.is_none() && config.listen.ip().is_unspecified() {
            return Err(Error::InvalidConfig(format!(
                "listening on {} needs an advertise address peers can reach",
                config.listen
            )));
        }
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let advertised = config.advertise.unwrap_or(bound);
        let incarnation = config.incarnation.unwrap_or_else(unix_millis);
        let identity = Identity::new(config.id.clone(), advertised, incarnation);

        let expected = config.expected_size.unwrap_or(config.seeds.len() + 1);
        let foca_config = config.timing.to_foca(expected);
        // foca's limit, 64 B of slack for our type byte and leave notices,
        // and the tag: a legitimate datagram is never truncated.
        let buf_len = foca_config.max_packet_size.get() + 64 + seal::TAG_LEN;
        let seed = hash_seed(&identity);
        let foca = Foca::new(
            identity.clone(),
            foca_config,
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
        );

        let mut detector = PartitionDetector::new(config.expected_size, config.partition_hold);
        let local = MemberInfo::from_identity(&identity, MemberState::Alive);
        let partition = detector.observe(Instant::now().into_std(), 1, 1);
        let initial = ClusterView {
            epoch: 0,
            local: local.clone(),
            members: vec![local],
            partition,
            same_id: Vec::new(),
        };
        record_metrics(&initial);
        let (view_tx, view_rx) = watch::channel(initial);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let rejected = Arc::new(AtomicU64::new(0));

        let resolver = tokio::spawn(resolve_seeds(
            config.seeds.clone(),
            config.seed_retry,
            cmd_tx.clone(),
        ));
        let driver = Driver {
            foca,
            runtime: AccumulatingRuntime::new(),
            codec: PostcardCodec,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            outbox: Vec::new(),
            left: HashSet::new(),
            counted_left: HashSet::new(),
            detector,
            view_tx,
            leaving: false,
            key: config.gossip_key,
            rejected: Arc::clone(&rejected),
            reject_warned_at: None,
        };
        let authenticated = driver.key.is_some();
        let task = tokio::spawn(driver.run(socket, cmd_rx, buf_len));
        tracing::info!(
            node = %identity.id,
            addr = %advertised,
            incarnation,
            authenticated,
            "gossip started"
        );
        Ok(MembershipHandle {
            identity,
            local_addr: bound,
            view_rx,
            cmd_tx,
            task: Some(task),
            resolver,
            rejected,
        })
    }
}

/// Control handle of a running membership. Dropping it stops gossip
/// abruptly (like [`MembershipHandle::abort`], without awaiting).
#[derive(Debug)]
pub struct MembershipHandle {
    identity: Identity,
    local_addr: SocketAddr,
    view_rx: watch::Receiver<ClusterView>,
    cmd_tx: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
    resolver: JoinHandle<()>,
    rejected: Arc<AtomicU64>,
}

impl MembershipHandle {
    /// The bound UDP address (the actual port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The identity we started with (foca may renew the incarnation later;
    /// the current one is in [`ClusterView::local`]).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A receiver of cluster views; it sees the latest view immediately and
    /// every change after it.
    pub fn subscribe(&self) -> watch::Receiver<ClusterView> {
        self.view_rx.clone()
    }

    /// The current view.
    pub fn view(&self) -> ClusterView {
        self.view_rx.borrow().clone()
    }

    /// How many received datagrams this member dropped because their
    /// authentication tag did not verify (too short, untagged, or sealed
    /// with another key). Always 0 without a gossip key. The same events
    /// feed the `mnemo_gossip_rejected_total` counter.
    pub fn rejected_datagrams(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Leaves gracefully: tells reachable members we are leaving (they show
    /// us as `Left`), gossips our own `Down`, publishes a last view with the
    /// local member `Left` and stops. Returns [`Error::Stopped`] if the
    /// membership already stopped.
    pub async fn leave(&mut self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Leave(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?;
        self.resolver.abort();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }

    /// Stops without telling anyone, as a crash would; peers detect it by
    /// probing. Waits until the socket is closed so the port can be reused.
    pub async fn abort(mut self) {
        self.resolver.abort();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MembershipHandle {
    fn drop(&mut self) {
        self.resolver.abort();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

enum Command {
    Seeds(Vec<SocketAddr>),
    Leave(oneshot::Sender<()>),
}

enum Event {
    Packet(std::io::Result<(usize, SocketAddr)>),
    Timer,
    Command(Option<Command>),
    Tick,
}

/// A timer event due at `at`; `seq` keeps submission order among equal
/// deadlines.
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer<Identity>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Driver {
    foca: FocaInstance,
    runtime: AccumulatingRuntime<Identity>,
    codec: PostcardCodec,
    timers: BinaryHeap<Reverse<Scheduled>>,
    timer_seq: u64,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    // (id, incarnation) of members that sent a leave notice.
    left: HashSet<(String, u64)>,
    // Ids whose leave lowered the expected cluster size, until they are
    // seen alive again: a repeated (or replayed) notice counts once.
    counted_left: HashSet<String>,
    detector: PartitionDetector,
    view_tx: watch::Sender<ClusterView>,
    leaving: bool,
    // Seals outgoing and verifies incoming datagrams, if configured.
    key: Option<GossipKey>,
    // Datagrams dropped for a bad tag; shared with the handle.
    rejected: Arc<AtomicU64>,
    // When the last rate-limited warning about rejected datagrams went out.
    reject_warned_at: Option<Instant>,
}

impl Driver {
    async fn run(mut self, socket: UdpSocket, mut cmd_rx: mpsc::Receiver<Command>, buf_len: usize) {
        let mut buf = vec![0u8; buf_len];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse(s)| s.at);
            let event = tokio::select! {
                r = socket.recv_from(&mut buf) => Event::Packet(r),
                () = sleep_until_opt(next_timer) => Event::Timer,
                c = cmd_rx.recv() => Event::Command(c),
                _ = tick.tick() => Event::Tick,
            };
            let mut reply = None;
            match event {
                Event::Packet(Ok((len, from))) => self.on_datagram(&buf[..len], from),
                Event::Packet(Err(e)) => tracing::debug!(error = %e, "gossip recv failed"),
                Event::Timer => self.fire_timers(Instant::now()),
                Event::Command(None) => return,
                Event::Command(Some(Command::Seeds(addrs))) => self.announce_to_seeds(&addrs),
                Event::Command(Some(Command::Leave(tx))) => {
                    self.leave();
                    reply = Some(tx);
                }
                Event::Tick => {}
            }
            for (to, mut data) in self.outbox.drain(..) {
                if let Some(key) = &self.key {
                    data = key.seal(&data);
                }
                if let Err(e) = socket.send_to(&data, to).await {
                    tracing::debug!(error = %e, %to, "gossip send failed");
                }
            }
            self.publish(Instant::now());
            if let Some(tx) = reply {
                let _ = tx.send(());
                return;
            }
        }
    }

    /// Verifies a received datagram (with a key) and hands it on, or counts
    /// and drops it.
    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(key) = &self.key else {
            return self.on_packet(datagram, from);
        };
        if let Some(packet) = key.open(datagram) {
            return self.on_packet(packet, from);
        }
        let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("mnemo_gossip_rejected_total").increment(1);
        tracing::debug!(%from, len = datagram.len(), "dropping unauthenticated gossip datagram");
        let now = Instant::now();
        if self
            .reject_warned_at
            .is_none_or(|at| now.duration_since(at) >= REJECT_WARN_EVERY)
        {
            self.reject_warned_at = Some(now);
            tracing::warn!(
                %from,
                total,
                "dropping gossip datagrams with a bad or missing tag (wrong or missing gossip key?)"
            );
        }
    }

    fn on_packet(&mut self, data: &[u8], from: SocketAddr) {
        match data.split_first() {
            Some((&TAG_FOCA, payload)) => {
                let result = self.foca.handle_data(payload, &mut self.runtime);
                if let Err(e) = result {
                    tracing::trace!(error = %e, %from, "foca rejected packet");
                }
            }
            Some((&TAG_LEAVE, payload)) => {
                match Codec::<Identity>::decode_member(&mut self.codec, payload) {
                    Ok(member) => {
                        let identity = member.id().clone();
                        // Only a notice about the incarnation this node knows
                        // counts: an old notice (replayed, or from before a
                        // restart) must not make a live member leave.
                        let known = self
                            .foca
                            .iter_membership_state()
                            .any(|m| m.id() == &identity);
                        if !known {
                            tracing::debug!(member = ?identity, "ignoring a leave notice for an identity not known");
                            return;
                        }
                        tracing::info!(member = ?identity, "member is leaving");
                        self.left
                            .insert((identity.id.clone(), identity.incarnation));
                        // Once per leave lowers the expected size.
                        if self.counted_left.insert(identity.id.clone()) {
                            self.detector.member_left();
                        }
                        let update = std::iter::once(Member::down(identity));
                        if let Err(e) = self.foca.apply_many(update, true, &mut self.runtime) {
                            tracing::debug!(error = %e, "applying leave notice failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, %from, "bad leave notice"),
                }
            }
            _ => tracing::trace!(%from, "ignoring unknown datagram"),
        }
        self.drain();
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse(next)) = self.timers.peek() {
            if next.at > now {
                break;
            }
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            if let Err(e) = self.foca.handle_timer(due.timer, &mut self.runtime) {
                tracing::debug!(error = %e, "foca timer failed");
            }
            self.drain();
        }
    }

    fn announce_to_seeds(&mut self, addrs: &[SocketAddr]) {
        if self.leaving {
            return;
        }
        let own = self.foca.identity().addr;
        let members: HashSet<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for &addr in addrs {
            if addr == own || members.contains(&addr) {
                continue;
            }
            tracing::debug!(seed = %addr, "announcing to seed");
            if let Err(e) = self.foca.announce(Identity::seed(addr), &mut self.runtime) {
                tracing::debug!(error = %e, "announce failed");
            }
            self.drain();
        }
    }

    fn leave(&mut self) {
        self.leaving = true;
        let me = self.foca.identity().clone();
        let mut notice = vec![TAG_LEAVE];
        match self
            .codec
            .encode_member(&Member::down(me.clone()), &mut notice)
        {
            Ok(()) => {
                for member in self.foca.iter_members() {
                    self.outbox.push((member.id().addr, notice.clone()));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode leave notice"),
        }
        self.left.insert((me.id.clone(), me.incarnation));
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::warn!(error = %e, "leave_cluster failed");
        }
        self.drain();
        tracing::info!(node = %me.id, "left the cluster");
    }

    /// Moves everything foca asked for out of the accumulating runtime.
    fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            let mut packet = Vec::with_capacity(data.len() + 1);
            packet.push(TAG_FOCA);
            packet.extend_from_slice(&data);
            self.outbox.push((to.addr, packet));
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                seq: self.timer_seq,
                timer,
            }));
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                foca::OwnedNotification::MemberUp(m) => tracing::info!(member = ?m, "member up"),
                foca::OwnedNotification::MemberDown(m) => {
                    tracing::info!(member = ?m, "member down");
                }
                foca::OwnedNotification::Rejoin(m) => {
                    tracing::warn!(identity = ?m, "declared down by the cluster; rejoined");
                }
                other => tracing::debug!(notification = ?other, "foca"),
            }
        }
    }

    /// Rebuilds the view from foca's table; publishes it if it changed.
    fn publish(&mut self, now: Instant) {
        let me = self.foca.identity().clone();
        let local_state = if self.leaving {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        let local = MemberInfo::from_identity(&me, local_state);
        // Forget leave notices about identities foca no longer knows.
        let known: HashSet<(&str, u64)> = self
            .foca
            .iter_membership_state()
            .map(|m| (m.id().id.as_str(), m.id().incarnation))
            .collect();
        self.left.retain(|(id, inc)| {
            (id == &me.id && *inc == me.incarnation) || known.contains(&(id.as_str(), *inc))
        });
        let entries = self
            .foca
            .iter_membership_state()
            .map(|m| (m.id(), m.state()));
        let members = merge_members(&local, entries, &self.left);
        let same_id: Vec<MemberInfo> = self
            .foca
            .iter_membership_state()
            .filter(|m| {
                let other = m.id();
                other.id == local.id && other.addr != local.addr && m.state() == foca::State::Alive
            })
            .map(|m| MemberInfo::from_identity(m.id(), MemberState::Alive))
            .collect();
        // A member that left and is alive again counts again (the detector
        // sees it in `present`), and a later leave of it lowers the size again.
        self.counted_left.retain(|id| {
            !members
                .iter()
                .any(|m| &m.id == id && m.state == MemberState::Alive)
        });
        let reachable = members.iter().filter(|m| m.state.is_live()).count();
        let present = members
            .iter()
            .filter(|m| m.state != MemberState::Left)
            .count();
        let partition: PartitionState = self.detector.observe(now.into_std(), reachable, present);
        let changed = {
            let current = self.view_tx.borrow();
            current.local != local
                || current.members != members
                || current.partition != partition
                || current.same_id != same_id
        };
        if changed {
            self.view_tx.send_modify(|view| {
                view.epoch += 1;
                view.local = local;
                view.members = members;
                view.partition = partition;
                view.same_id = same_id;
                record_metrics(view);
            });
        }
    }
}

fn record_metrics(view: &ClusterView) {
    metrics::gauge!("mnemo_cluster_partitioned").set(if view.partition.partitioned {
        1.0
    } else {
        0.0
    });
    for state in [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Down,
        MemberState::Left,
    ] {
        metrics::gauge!("mnemo_cluster_members", "state" => state.as_str())
            .set(view.count(state) as f64);
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn resolve_seeds(seeds: Vec<String>, every: Duration, tx: mpsc::Sender<Command>) {
    if seeds.is_empty() {
        return;
    }
    // Start fast so a node started together with its seed joins within a
    // fraction of a second, then slow down to `every`.
    let mut period = FIRST_SEED_RETRY.min(every);
    loop {
        let mut addrs = Vec::new();
        for seed in &seeds {
            match tokio::net::lookup_host(seed.as_str()).await {
                Ok(found) => addrs.extend(found),
                Err(e) => tracing::debug!(%seed, error = %e, "cannot resolve seed"),
            }
        }
        if tx.send(Command::Seeds(addrs)).await.is_err() {
            return;
        }
        tokio::time::sleep(period).await;
        period = (period * 2).min(every);
    }
}

/// First wait between seed announcements; doubles up to `seed_retry`.
const FIRST_SEED_RETRY: Duration = Duration::from_millis(100);

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seed for foca's RNG (probe order, gossip targets): differs per node and
/// per start, which is all SWIM needs.
fn hash_seed(identity: &Identity) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    identity.hash(&mut h);
    h.finish()
}
