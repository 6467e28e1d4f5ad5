//! SIGKILL one node while writers are in the middle of batches, again and
//! again, on one data directory: after every restart each acknowledged write
//! is there with its exact content, each acknowledged forget holds, nothing
//! appears that was never sent, and the state served after a replay is the
//! state a further crash or a clean stop comes back to.
//!
//! The node checkpoints every MiB (`--checkpoint-mib 1`), so kills land
//! before, during and after checkpoints, not only with a long log; and
//! between rounds a start is killed a few milliseconds in, while it replays
//! the log.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mnemo_proto::v1::{self, mnemo_client::MnemoClient};
use support::{NodeProcess, recall_all, remember};
use tonic::transport::Channel;

const ROUNDS: usize = 8;
const WRITERS: usize = 16;
const SPACES: usize = 8;
const FLAGS: &[&str] = &["--checkpoint-mib", "1", "--http", "127.0.0.1:0"];

fn space(n: usize) -> String {
    format!("crash-{}", n % SPACES)
}

/// What the writers were told, across every round.
#[derive(Default)]
struct Ledger {
    /// Acknowledged memories: id -> (space, content).
    acked: HashMap<String, (String, String)>,
    /// Acknowledged forgets.
    forgotten: HashSet<String>,
    /// Sent but not acknowledged (the node died first): may or may not be
    /// there, but if there, whole.
    unsure: HashMap<String, (String, String)>,
    unsure_forgets: HashSet<String>,
}

impl Ledger {
    /// Checks what the node serves against the ledger, then settles what
    /// was unsure: after a restart, what is there is durable and what is
    /// not never will be.
    fn check(&mut self, served: &HashMap<String, (String, String)>, round: usize) {
        for (id, (space, content)) in &self.acked {
            if self.forgotten.contains(id) || self.unsure_forgets.contains(id) {
                continue;
            }
            assert_eq!(
                served.get(id),
                Some(&(space.clone(), content.clone())),
                "round {round}: acknowledged memory {id} is missing or changed"
            );
        }
        for id in &self.forgotten {
            assert!(
                !served.contains_key(id),
                "round {round}: acknowledged forget of {id} was undone"
            );
        }
        for (id, found) in served {
            let sent = self.acked.get(id).or_else(|| self.unsure.get(id));
            assert_eq!(
                sent,
                Some(found),
                "round {round}: {id} is served but was never sent with this content"
            );
        }
        for (id, memory) in self.unsure.drain() {
            if served.contains_key(&id) {
                self.acked.insert(id, memory);
            }
        }
        for id in std::mem::take(&mut self.unsure_forgets) {
            if !served.contains_key(&id) {
                self.forgotten.insert(id);
            }
        }
    }
}

/// Every memory the node serves, by id: (space, content).
async fn served(client: &mut MnemoClient<Channel>) -> HashMap<String, (String, String)> {
    let mut out = HashMap::new();
    for n in 0..SPACES {
        let space = space(n);
        let found = client
            .recall(recall_all(&space, "entry"))
            .await
            .expect("recall")
            .into_inner();
        assert!(found.memories.len() < 1000, "a space outgrew one recall");
        for m in found.memories {
            let m = m.memory.expect("a memory");
            out.insert(m.id, (space.clone(), m.content));
        }
    }
    out
}

/// Each space's digest and counts, as the node reports them.
async fn digests(client: &mut MnemoClient<Channel>) -> BTreeMap<String, (String, u64, u64)> {
    let status = client
        .status(v1::StatusRequest::default())
        .await
        .expect("status")
        .into_inner();
    status
        .spaces
        .into_iter()
        .map(|s| (s.name, (s.digest, s.memories, s.tombstones)))
        .collect()
}

/// One writer until the node dies: remembers, and now and then forgets
/// one of its own acknowledged memories.
async fn write(
    mut client: MnemoClient<Channel>,
    ledger: Arc<Mutex<Ledger>>,
    round: usize,
    w: usize,
    acks: Arc<AtomicUsize>,
    kill_at: usize,
    kill: Arc<tokio::sync::Notify>,
) {
    let mut mine: Vec<String> = Vec::new();
    for i in 0.. {
        let ok = if i % 5 == 4 && !mine.is_empty() {
            let id = mine.swap_remove(i % mine.len());
            let space = ledger.lock().unwrap().acked[&id].0.clone();
            ledger.lock().unwrap().unsure_forgets.insert(id.clone());
            let sent = client
                .forget(v1::ForgetRequest {
                    space,
                    id: id.clone(),
                    ack: v1::Ack::Primary as i32,
                })
                .await;
            let mut l = ledger.lock().unwrap();
            sent.is_ok() && {
                l.unsure_forgets.remove(&id);
                l.forgotten.insert(id);
                true
            }
        } else {
            let id = format!("r{round}-w{w}-{i}");
            let space = space(w + i);
            let content = format!(
                "entry {i} of writer {w} in round {round}: {}",
                "a memory long enough to span a few pages of log ".repeat(i % 7 * 40)
            );
            ledger
                .lock()
                .unwrap()
                .unsure
                .insert(id.clone(), (space.clone(), content.clone()));
            let sent = client
                .remember(remember(&space, &id, &content, v1::Ack::Primary))
                .await;
            let mut l = ledger.lock().unwrap();
            sent.is_ok() && {
                let memory = l.unsure.remove(&id).expect("recorded");
                l.acked.insert(id.clone(), memory);
                mine.push(id);
                true
            }
        };
        if !ok {
            return;
        }
        if acks.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
            kill.notify_one();
        }
    }
}

/// SIGKILLs a node a few milliseconds into its start (a different moment
/// each round: replaying the log, starting it over, loading the index).
/// The delay picks where the crash lands; nothing waits on it for an
/// outcome, and the next round's start checks everything.
async fn crash_while_starting(dir: &std::path::Path, round: usize) {
    let mut starting = support::mnemo()
        .args([
            "node",
            "--id",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .args(FLAGS)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn mnemo node");
    tokio::time::sleep(std::time::Duration::from_millis(round as u64 * 3)).await;
    let _ = starting.kill();
    let _ = starting.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut checkpoints = 0.0;
    for round in 0..ROUNDS {
        let mut node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", FLAGS);
        let mut client = node.client().await;
        let found = served(&mut client).await;
        ledger.lock().unwrap().check(&found, round);

        // Kill after a different number of acknowledgements each round.
        // At least ~1.5 MiB of log: a checkpoint happens in every round.
        let kill_at = 300 + round * 37 % 120;
        let acks = Arc::new(AtomicUsize::new(0));
        let kill = Arc::new(tokio::sync::Notify::new());
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            writers.spawn(write(
                client.clone(),
                Arc::clone(&ledger),
                round,
                w,
                Arc::clone(&acks),
                kill_at,
                Arc::clone(&kill),
            ));
        }
        kill.notified().await;
        let http = node.http.as_ref().expect("started with --http");
        checkpoints += support::metric_sum(
            &support::http_get(http, "/metrics"),
            "mnemo_store_checkpoints_total",
        );
        node.kill9();
        writers.join_all().await;
        {
            let l = ledger.lock().unwrap();
            assert!(
                !l.unsure.is_empty() || !l.unsure_forgets.is_empty(),
                "round {round}: the kill came with writes in flight"
            );
        }
        crash_while_starting(dir.path(), round).await;
    }
    assert!(
        checkpoints >= ROUNDS as f64,
        "kills came after checkpoints too: {checkpoints} checkpoints"
    );

    // A replay ends in the state it served: a crash with nothing in flight
    // and a clean stop both come back to it.
    let mut node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", FLAGS);
    let mut client = node.client().await;
    let found = served(&mut client).await;
    ledger.lock().unwrap().check(&found, ROUNDS);
    let before = digests(&mut client).await;
    assert_eq!(before.len(), SPACES);
    node.kill9();
    let mut node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", FLAGS);
    let mut client = node.client().await;
    assert_eq!(
        digests(&mut client).await,
        before,
        "after a crash with nothing in flight"
    );
    node.terminate();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", FLAGS);
    let mut client = node.client().await;
    assert_eq!(digests(&mut client).await, before, "after a clean stop");
    let l = ledger.lock().unwrap();
    assert!(
        l.acked.len() > ROUNDS * 200 && !l.forgotten.is_empty(),
        "the rounds wrote and forgot: {} acknowledged, {} forgotten",
        l.acked.len(),
        l.forgotten.len()
    );
}
