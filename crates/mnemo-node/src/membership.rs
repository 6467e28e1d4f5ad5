//! Membership → routing and data: every change of the SWIM view swaps the
//! router's topology and partition state, and sets data moving:
//! - a node that returns (new incarnation, or alive after down) gets its
//!   breaker probed at once, and the spaces it holds repaired towards it;
//! - this node's first view with a peer, and the end of a partition, start a
//!   full settle (catch up on everything before serving it);
//! - a member that went away starts a partial settle: spaces this node now
//!   holds and did not before are caught up before they are served.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mnemo_cluster::ClusterView;
use mnemo_proto::v1::mnemo_server::MnemoServer;
use mnemo_router::{Member, MemberState, NodeId, PartitionState};
use tokio::sync::watch;

use crate::antientropy::{self, Job};
use crate::catchup::SettleKind;
use crate::node::Node;
use crate::service::MnemoService;

/// Probes of a suspected twin, and the pause between them: a node that
/// restarted at another address, or is moving and still handing over,
/// stops answering (or says it is leaving) within them.
const TWIN_PROBES: u32 = 3;
const TWIN_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks, off the membership loop and once per identity, every live node
/// that has this node's id and started earlier; stops this node for good
/// if one really is a twin.
fn check_twins(node: &Arc<Node>, view: &ClusterView, checked: &mut HashSet<(String, u64)>) {
    for other in view
        .same_id
        .iter()
        .filter(|o| o.incarnation < view.local.incarnation)
    {
        if !checked.insert((other.addr.to_string(), other.incarnation)) {
            continue;
        }
        let (node, addr) = (Arc::clone(node), other.addr.to_string());
        tokio::spawn(async move {
            for probe in 0..TWIN_PROBES {
                if probe > 0 {
                    tokio::time::sleep(TWIN_PAUSE).await;
                }
                if !answers_as(&node, &addr).await {
                    return;
                }
            }
            let why = format!(
                "node id {:?} is already used by the node at {addr}; give every node its own --id",
                node.id
            );
            tracing::error!("{why}");
            let _ = node.fatal.set(why);
            let _ = node.stop.send(true);
        });
    }
}

/// True when the node at `addr` answers, as a serving node that is not
/// leaving, with this node's id.
async fn answers_as(node: &Node, addr: &str) -> bool {
    // Dialled as the router dials any peer (scheme, TLS, timeouts).
    let pool = crate::server::router_config(&node.config).pool;
    let twin = Member::alive(node.id.as_str(), addr);
    let Ok(endpoint) = mnemo_router::pool::endpoint(&twin, &pool) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut request = tonic::Request::new(mnemo_proto::v1::StatusRequest {});
    request.set_timeout(std::time::Duration::from_secs(2));
    match crate::forward::client(channel).status(request).await {
        Ok(answer) => answer.get_ref().node_id == node.id && !answer.get_ref().leaving,
        Err(_) => false,
    }
}

/// The router's members for a membership view (this node included).
pub(crate) fn members(view: &ClusterView) -> Vec<Member> {
    view.members
        .iter()
        .map(|m| Member {
            id: NodeId::from(m.id.as_str()),
            addr: m.addr.to_string(),
            state: m.state,
        })
        .collect()
}

pub(crate) fn partition(view: &ClusterView) -> PartitionState {
    view.partition
}

/// What changed among the other members between two views.
#[derive(Default)]
struct Changes {
    /// Live now and new, restarted, or back from down.
    came: Vec<String>,
    /// Seen for the first time.
    new: bool,
    /// Live before and not now (down, left, or gone from the view).
    went: bool,
}

fn diff(me: &str, known: &mut HashMap<String, (u64, bool)>, view: &ClusterView) -> Changes {
    let mut c = Changes::default();
    let mut present = HashSet::new();
    for m in view.members.iter().filter(|m| m.id != me) {
        present.insert(m.id.as_str());
        let live = m.state.is_live();
        match known.insert(m.id.clone(), (m.incarnation, live)) {
            None => {
                c.new = true;
                if live {
                    c.came.push(m.id.clone());
                }
            }
            Some((incarnation, was_live)) => {
                if live && (!was_live || incarnation != m.incarnation) {
                    c.came.push(m.id.clone());
                }
                c.went |= was_live && !live;
            }
        }
    }
    known.retain(|id, (_, live)| {
        let keep = present.contains(id.as_str());
        c.went |= !keep && *live;
        keep
    });
    c
}

/// The router's members: the view's, plus every member that dropped out of
/// the view without leaving (SWIM forgets a down member after a while; the
/// spaces placed on it are still its, and must not be answered as empty by
/// whoever placement would name without it). `remembered` keeps them.
fn with_remembered(view: &ClusterView, remembered: &mut HashMap<String, Member>) -> Vec<Member> {
    let mut out = members(view);
    for m in &out {
        if m.state == MemberState::Left {
            remembered.remove(m.id.as_str());
        } else {
            remembered.insert(m.id.to_string(), m.clone());
        }
    }
    for (id, m) in remembered.iter() {
        if !out.iter().any(|o| o.id.as_str() == id) {
            out.push(Member {
                state: MemberState::Down,
                ..m.clone()
            });
        }
    }
    out
}

/// Follows membership until the node stops.
pub(crate) async fn follow(node: Arc<Node>, mut view: watch::Receiver<ClusterView>) {
    let mut known: HashMap<String, (u64, bool)> = HashMap::new();
    let mut remembered: HashMap<String, Member> = HashMap::new();
    let mut was_partitioned = false;
    let mut settled_once = false;
    let mut incarnation = view.borrow().local.incarnation;
    let mut twins_checked = HashSet::new();
    loop {
        let current = view.borrow_and_update().clone();
        check_twins(&node, &current, &mut twins_checked);
        let before = node.router.table();
        node.router
            .update_topology(with_remembered(&current, &mut remembered), current.epoch);
        node.router.set_partition(partition(&current));
        let met_someone = current
            .members
            .iter()
            .any(|m| m.id != node.id && m.state.is_live());
        if met_someone && !node.joined.swap(true, Ordering::AcqRel) {
            tracing::info!(id = %node.id, "joined the cluster");
            node.health.set_serving::<MnemoServer<MnemoService>>().await;
        }

        let changes = diff(&node.id, &mut known, &current);
        if changes.went || !changes.came.is_empty() {
            node.sync
                .readiness
                .lock()
                .expect("lock poisoned")
                .membership_changed();
        }
        for m in &current.members {
            if m.state == MemberState::Left && m.id != node.id {
                node.replicator.forget_peer(&m.id);
                node.hops.forget_peer(&m.id);
            }
        }
        for id in &changes.came {
            node.router.member_returned(id);
        }
        let partitioned = current.partition.partitioned;
        // The cluster declared this node down (it stalled, or was cut off
        // without noticing) and it rejoined: others took its writes
        // meanwhile, as after a partition.
        let rejoined = current.local.incarnation != incarnation;
        incarnation = current.local.incarnation;
        let healed = (was_partitioned || rejoined) && !partitioned;
        was_partitioned = partitioned;

        if node.joined.load(Ordering::Acquire) && !partitioned {
            // A member seen for the first time during a full settle (the
            // view of a starting node is still filling in) may hold spaces
            // the settle has not listed: start it again. Later, a new member
            // cannot make this node a holder of anything it lacks; the
            // holders it joins push their spaces to it.
            let full_in_progress = node
                .sync
                .readiness
                .lock()
                .expect("lock poisoned")
                .settling()
                == Some(SettleKind::Full);
            if !settled_once || healed || (changes.new && full_in_progress) {
                settled_once = true;
                tokio::spawn(antientropy::settle(Arc::clone(&node), SettleKind::Full));
            } else if changes.went {
                // Spaces this node holds now and did not before: catch up.
                let was_holder = |space: &str| {
                    let t = before.topology();
                    t.local_index()
                        .is_some_and(|me| t.preference_list(space).contains(me))
                };
                {
                    let mut r = node.sync.readiness.lock().expect("lock poisoned");
                    for space in node.store.space_names() {
                        if node.is_holder(&space) && !was_holder(&space) {
                            r.mark_stale(&space);
                        }
                    }
                }
                let kind = match node
                    .sync
                    .readiness
                    .lock()
                    .expect("lock poisoned")
                    .settling()
                {
                    Some(SettleKind::Full) => SettleKind::Full,
                    _ => SettleKind::Partial,
                };
                tokio::spawn(antientropy::settle(Arc::clone(&node), kind));
            }
        }
        // Give a returning or new holder what this node has of its spaces;
        // catch-ups that failed while it was away may succeed now.
        if !changes.came.is_empty() && !partitioned {
            antientropy::retry_stale(&node);
            for space in node.store.space_names() {
                let holders = node.holders_of(&space);
                for peer in changes.came.iter().filter(|p| holders.contains(p)) {
                    node.sync.enqueue(Job::Repair {
                        space: space.clone(),
                        peer: peer.clone(),
                    });
                }
            }
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}
