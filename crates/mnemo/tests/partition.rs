//! A real network partition: five node processes, each in its own network
//! namespace, joined by a bridge; one node is cut off both ways, later
//! another one way (it can send but not receive), by pointing its peers'
//! (and its own) neighbour entries at a MAC address nobody has. The test
//! process reaches every node through the bridge the whole time.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2's `ip netns`; without them it
//! fails and says what is missing. Everything it creates (namespaces, veth
//! pairs, the bridge) carries this process's id and is removed at the end.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use mnemo_proto::v1;
use support::{Cluster, NodeProcess, eventually, ids, remember};
use tonic::Code;

const NODES: usize = 5;
const PORT: u16 = 7400;
/// A MAC no interface has: frames sent to it are dropped.
const NOWHERE: &str = "02:00:00:00:00:99";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Namespaces n1..n5 on a bridge, addresses 10.231.<x>.1..5, the bridge .254.
struct Net {
    tag: String,
    subnet: String,
}

impl Net {
    fn create() -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("mn{}", pid % 100_000),
            subnet: format!("10.231.{}", pid % 250),
        };
        if let Err(e) = ip(&["link", "add", &net.bridge(), "type", "bridge"]) {
            panic!(
                "this test needs root (CAP_NET_ADMIN) and iproute2 to build network \
                 namespaces joined by a bridge: {e}"
            );
        }
        must(&["link", "set", &net.bridge(), "up"]);
        must(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &net.bridge(),
        ]);
        for i in 1..=NODES {
            let (ns, veth) = (net.ns(i), format!("{}v{i}", net.tag));
            ip(&["netns", "add", &ns])
                .unwrap_or_else(|e| panic!("this test needs `ip netns add` (root, iproute2): {e}"));
            must(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["link", "set", &veth, "master", &net.bridge(), "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ]);
            must(&["-n", &ns, "link", "set", "eth0", "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    fn others(i: usize) -> impl Iterator<Item = usize> {
        (1..=NODES).filter(move |&j| j != i)
    }

    /// In node `at`'s namespace, points node `to`'s address at a MAC nobody
    /// has: `at` can no longer send to `to`.
    fn blackhole(&self, at: usize, to: usize) {
        let (ns, addr) = (self.ns(at), self.addr(to));
        must(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &addr,
            "lladdr",
            NOWHERE,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }

    /// Undoes [`Net::blackhole`] (ARP finds the real address again).
    fn unblackhole(&self, at: usize, to: usize) {
        let _ = ip(&[
            "-n",
            &self.ns(at),
            "neigh",
            "del",
            &self.addr(to),
            "dev",
            "eth0",
        ]);
    }

    /// Node `i`'s peers can no longer send to it; with `both`, it can no
    /// longer send to them either.
    fn cut(&self, i: usize, both: bool) {
        for j in Net::others(i) {
            self.blackhole(j, i);
            if both {
                self.blackhole(i, j);
            }
        }
    }

    fn heal(&self, i: usize) {
        for j in Net::others(i) {
            self.unblackhole(j, i);
            self.unblackhole(i, j);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=NODES {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

fn everything(space: &str) -> v1::RecallRequest {
    support::recall_all(space, "budget")
}

fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(mnemo_proto::FORWARDED_BY, "n1".parse().unwrap());
    request
}

async fn await_partition(node: &NodeProcess, state: &str) {
    eventually(&format!("{} to be {state}", node.id), || async {
        (node.status().await.partition == state).then_some(())
    })
    .await;
}

async fn await_seen(cluster: &Cluster, id: &str, reachable: bool) {
    for n in cluster.nodes.iter().filter(|n| n.id != id) {
        eventually(
            &format!("{} to see {id} reachable={reachable}", n.id),
            || async {
                let s = n.status().await;
                let m = s.members.iter().find(|m| m.id == id)?;
                (matches!(m.state.as_str(), "alive" | "suspect") == reachable).then_some(())
            },
        )
        .await;
    }
}

/// Spaces `id` holds while the whole cluster is connected.
async fn held_by(cluster: &Cluster, id: &str, spaces: &[String]) -> Vec<String> {
    let mut held = Vec::new();
    for s in spaces {
        if cluster.holders(s).await.contains(&id.to_owned()) {
            held.push(s.clone());
        }
    }
    held
}

/// The isolated node answers what it holds (`held`, as placed over the
/// whole cluster) degraded, refuses the rest, and refuses forwarded
/// requests for the rest.
async fn isolated_behaves(cluster: &Cluster, id: &str, spaces: &[String], held: &[String]) {
    let node = cluster.node(id);
    let mut c = node.client().await;
    // Forwarded requests are honoured from nodes only: present one's
    // certificate for those.
    let mut peer = support::client_as(node.addr, node.certs.as_ref().unwrap(), "n1").await;
    assert!(
        !held.is_empty() && held.len() < spaces.len(),
        "{id} holds {held:?}"
    );
    for s in spaces {
        let answer = c
            .recall(v1::RecallRequest {
                min_confidence: Some(0.5),
                ..everything(s)
            })
            .await;
        if held.contains(s) {
            let r = answer.unwrap().into_inner();
            assert!(r.degraded && r.served_by == id, "{s}: {r:?}");
            // The penalty (1 of 5 reachable: 0.2) applies before the caller's
            // minimum: confidence 1.0 becomes 0.2 < 0.5, so nothing is left.
            assert!(r.memories.is_empty(), "{s}: {r:?}");
        } else {
            let e = answer.unwrap_err();
            assert_eq!(e.code(), Code::Unavailable, "{s}");
            assert!(
                e.message().contains("no local data") && e.message().contains("during partition"),
                "{e:?}"
            );
            let e = peer.recall(forwarded(everything(s))).await.unwrap_err();
            assert_eq!(
                e.code(),
                Code::Unavailable,
                "forwarded recall of {s}: {e:?}"
            );
            let e = peer
                .remember(forwarded(remember(
                    s,
                    "stray",
                    "a stray copy",
                    v1::Ack::Primary,
                )))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unavailable, "forwarded write to {s}: {e:?}");
        }
    }
}

/// Five nodes, one per namespace, n1 the seed.
async fn start(net: &Net) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    support::make_certs(&certs, NODES);
    let seed = format!("{}:{PORT}", net.addr(1));
    let mut nodes = Vec::new();
    for i in 1..=NODES {
        let id = format!("n{i}");
        let listen = format!("{}:{PORT}", net.addr(i));
        let mut flags: Vec<&str> = support::TEST_NODE_FLAGS.to_vec();
        if i > 1 {
            flags.extend(["--join", &seed]);
        }
        nodes.push(NodeProcess::start_in(
            &net.ns(i),
            &certs,
            &id,
            &dir.path().join(&id),
            &listen,
            &flags,
        ));
    }
    let cluster = Cluster::assemble(nodes, dir);
    cluster.await_formed().await;

    cluster
}

/// Both sides write and forget in `space` (held by n5, which is cut off),
/// one id on both sides.
async fn both_sides_write(cluster: &Cluster, space: &str) {
    // The minority first, then the majority, each: the shared id, an id of
    // its own, and a forget of a memory written before the cut.
    for (node, side, ack, forgotten) in [
        ("n5", "minority", v1::Ack::Primary, "base-0"),
        ("n1", "majority", v1::Ack::Quorum, "base-1"),
    ] {
        let mut c = cluster.node(node).client().await;
        let both = format!("budget as the {side} saw it");
        c.remember(remember(space, "both", &both, ack))
            .await
            .unwrap();
        let own = format!("budget noted in the {side}");
        c.remember(remember(space, &format!("{side}-only"), &own, ack))
            .await
            .unwrap();
        c.forget(v1::ForgetRequest {
            space: space.to_owned(),
            id: forgotten.into(),
            ack: ack as i32,
        })
        .await
        .unwrap();
    }
}

/// After healing, every node and every holder shows the majority's writes,
/// the minority's too, and neither side's forgotten memories.
async fn majority_wins(cluster: &Cluster, space: &str) {
    let expected: BTreeSet<String> = ["base-2", "base-3", "both", "minority-only", "majority-only"]
        .into_iter()
        .map(String::from)
        .collect();
    for n in &cluster.nodes {
        let r = n.recall(everything(space)).await;
        assert_eq!(ids(&r), expected, "through {}", n.id);
        let both = r
            .memories
            .iter()
            .find_map(|m| m.memory.as_ref().filter(|m| m.id == "both"))
            .unwrap();
        assert_eq!(
            both.content, "budget as the majority saw it",
            "through {}",
            n.id
        );
    }
    for h in cluster.holders(space).await {
        let local = ids(&cluster
            .node(&h)
            .recall_local(space, "budget")
            .await
            .unwrap());
        assert_eq!(local, expected, "holder {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_serves_what_it_holds_and_both_sides_converge_after_healing() {
    let net = Net::create();
    let cluster = start(&net).await;
    let spaces: Vec<String> = (0..12).map(|i| format!("p-{i}")).collect();
    let mut c1 = cluster.node("n1").client().await;
    for s in &spaces {
        for j in 0..4 {
            c1.remember(remember(
                s,
                &format!("base-{j}"),
                &format!("budget line {j} of {s}"),
                v1::Ack::Quorum,
            ))
            .await
            .unwrap();
        }
    }

    // n5 cut off both ways.
    let held = held_by(&cluster, "n5", &spaces).await;
    let cut = std::time::Instant::now();
    net.cut(5, true);
    await_partition(cluster.node("n5"), "partitioned").await;
    let reported = cut.elapsed();
    await_seen(&cluster, "n5", false).await;
    eprintln!(
        "partition: n5 reports partitioned {:.2} s after the cut, the majority sees it down after {:.2} s",
        reported.as_secs_f64(),
        cut.elapsed().as_secs_f64()
    );
    isolated_behaves(&cluster, "n5", &spaces, &held).await;

    let space = &held[0];
    both_sides_write(&cluster, space).await;
    let mut c1 = cluster.node("n1").client().await;
    // The majority serves every space, completely.
    for s in spaces.iter().filter(|s| *s != space) {
        let r = c1.recall(everything(s)).await.unwrap().into_inner();
        assert_eq!(ids(&r).len(), 4, "{s} through n1: {r:?}");
        assert!(!r.degraded);
    }

    let healed = std::time::Instant::now();
    net.heal(5);
    await_partition(cluster.node("n5"), "connected").await;
    let connected = healed.elapsed();
    cluster.await_formed().await;
    cluster.await_converged(&spaces).await;
    eprintln!(
        "partition: after healing, n5 connected in {:.2} s, every holder converged in {:.2} s",
        connected.as_secs_f64(),
        healed.elapsed().as_secs_f64()
    );
    majority_wins(&cluster, space).await;

    // n4 cut off one way: it can send, but nothing reaches it.
    let held = held_by(&cluster, "n4", &spaces).await;
    net.cut(4, false);
    await_partition(cluster.node("n4"), "partitioned").await;
    await_seen(&cluster, "n4", false).await;
    isolated_behaves(&cluster, "n4", &spaces, &held).await;
    for s in &spaces {
        c1.recall(everything(s))
            .await
            .unwrap_or_else(|e| panic!("{s} through n1: {e}"));
    }
    net.heal(4);
    await_partition(cluster.node("n4"), "connected").await;
    cluster.await_formed().await;
    cluster.await_converged(&spaces).await;
}
