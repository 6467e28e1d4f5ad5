//! `mnemo dev`: a local cluster of real `mnemo node` processes on
//! consecutive ports, supervised.
//!
//! - A node that cannot start (port taken, data directory locked) stops
//!   the start-up at once, with that node's own last words.
//! - A node that dies later is reported and started again after
//!   [`RESTART_AFTER`], so failover and catch-up can be watched; one that
//!   dies again within [`RESTART_AFTER`] of such a restart is left down.
//! - Ctrl-C or SIGTERM stops every node gracefully. The nodes also stop
//!   when `mnemo dev` is killed outright: each watches its standard input,
//!   which only `mnemo dev` holds.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

use crate::args::{Common, DevArgs};
use crate::client::{Failure, connect};

/// How long a dead node stays down before it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// Longest the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each node's log kept to explain its death.
const LAST_LINES: usize = 8;

/// One supervised node.
struct DevNode {
    id: String,
    listen: String,
    pid: Option<u32>,
    started: Instant,
    /// Started again after dying (a crash loop is not restarted forever).
    restarted: bool,
    /// Held so the node's standard input stays open while we live.
    stdin: Option<ChildStdin>,
    last_lines: Arc<Mutex<VecDeque<String>>>,
}

/// What the supervisor hears.
enum Event {
    Exited(usize, std::io::Result<ExitStatus>),
    Restart(usize),
}

struct Dev {
    exe: PathBuf,
    args: DevArgs,
    certs_dir: PathBuf,
    seed: String,
    nodes: Vec<DevNode>,
    events: mpsc::UnboundedSender<Event>,
}

impl Dev {
    /// Starts node `i` (again) and watches it.
    fn spawn(&mut self, i: usize) -> Result<(), Failure> {
        let (id, listen) = (self.nodes[i].id.clone(), self.nodes[i].listen.clone());
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .args(["--id", &id, "--listen", &listen, "--stop-on-stdin-eof"])
            .args(["--expected-size", &self.args.nodes.to_string()])
            .arg("--data-dir")
            .arg(self.args.data_dir.join(&id))
            .arg("--certs-dir")
            .arg(&self.certs_dir)
            .env_remove("MNEMO_INSECURE")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if i > 0 {
            cmd.args(["--join", &self.seed]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure(format!("cannot start node {id}: {e}")))?;
        let node = &mut self.nodes[i];
        node.pid = child.id();
        node.started = Instant::now();
        node.stdin = child.stdin.take();
        node.last_lines.lock().expect("lines").clear();
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(prefix_lines(id, stderr, Arc::clone(&node.last_lines)));
        }
        let events = self.events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::Exited(i, status));
        });
        Ok(())
    }

    fn last_words(&self, i: usize) -> String {
        let lines = self.nodes[i].last_lines.lock().expect("lines");
        lines.iter().cloned().collect::<Vec<_>>().join("\n  ")
    }

    /// Stops every node still running: SIGTERM (a graceful leave), and
    /// SIGKILL for any still there after 5 s; at once with SIGKILL when not
    /// `graceful` (a cluster that never formed has nothing to hand over,
    /// and a SIGKILL loses nothing acknowledged).
    async fn stop_all(&mut self, events: &mut mpsc::UnboundedReceiver<Event>, graceful: bool) {
        // Index → pid of every node still running; a node leaves the map as
        // soon as its exit is heard, so no pid is signalled after it could
        // have been reused.
        let mut running: std::collections::BTreeMap<usize, u32> = self
            .nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.pid.take()?)))
            .collect();
        let signal = if graceful { "-TERM" } else { "-KILL" };
        for pid in running.values() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Exited(i, _))) => {
                    running.remove(&i);
                }
                Ok(Some(Event::Restart(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for pid in running.values() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .await;
        }
    }
}

pub(crate) async fn run(args: DevArgs) -> Result<(), Failure> {
    if args.nodes == 0 {
        return Err(Failure("--nodes must be at least 1".into()));
    }
    let last_port = args.base_port.checked_add(args.nodes - 1).ok_or_else(|| {
        Failure(format!(
            "--base-port {} leaves no room for {} nodes",
            args.base_port, args.nodes
        ))
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find the mnemo executable: {e}")))?;
    let ids: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    // A development cluster is secure too: its own CA, node and client
    // certificates under the data directory, made once and kept.
    let certs_dir = std::path::absolute(args.data_dir.join("certs"))
        .map_err(|e| Failure(format!("--data-dir: {e}")))?;
    let hosts = mnemo_node::security::certs::DEFAULT_HOSTS.map(String::from);
    mnemo_node::security::certs::create(&certs_dir, &ids, &hosts)
        .map_err(|e| Failure(format!("cannot make certificates: {e}")))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut dev = Dev {
        exe,
        seed: format!("127.0.0.1:{}", args.base_port),
        nodes: ids
            .iter()
            .zip(args.base_port..=last_port)
            .map(|(id, port)| DevNode {
                id: id.clone(),
                listen: format!("127.0.0.1:{port}"),
                pid: None,
                started: Instant::now(),
                restarted: false,
                stdin: None,
                last_lines: Arc::default(),
            })
            .collect(),
        args,
        certs_dir,
        events: tx,
    };
    for i in 0..dev.nodes.len() {
        dev.spawn(i)?;
    }
    let addrs: Vec<String> = dev.nodes.iter().map(|n| n.listen.clone()).collect();

    // Formed, or a node failed to start, or too slow: whichever comes first.
    let formed = tokio::select! {
        formed = await_formed(&addrs, &dev.certs_dir) => formed,
        Some(Event::Exited(i, status)) = events.recv() => {
            dev.nodes[i].pid = None;
            Err(format!(
                "node {} could not start ({}):\n  {}",
                dev.nodes[i].id,
                how(&status),
                dev.last_words(i)
            ))
        }
    };
    if let Err(why) = formed {
        dev.stop_all(&mut events, false).await;
        return Err(Failure(format!("mnemo dev: {why}")));
    }
    banner(&dev);

    loop {
        tokio::select! {
            () = crate::node_cmd::shutdown_signal() => {
                dev.stop_all(&mut events, true).await;
                return Ok(());
            }
            Some(event) = events.recv() => match event {
                Event::Exited(i, status) => {
                    dev.nodes[i].pid = None;
                    let node = &dev.nodes[i];
                    if node.restarted && node.started.elapsed() < RESTART_AFTER {
                        eprintln!(
                            "mnemo dev: node {} exited again ({}) within {} s of starting; \
                             leaving it down. Its last lines:\n  {}",
                            node.id, how(&status), RESTART_AFTER.as_secs(), dev.last_words(i)
                        );
                        continue;
                    }
                    eprintln!(
                        "mnemo dev: node {} exited ({}); the others keep serving. \
                         Starting it again in {} s.",
                        node.id, how(&status), RESTART_AFTER.as_secs()
                    );
                    let events = dev.events.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RESTART_AFTER).await;
                        let _ = events.send(Event::Restart(i));
                    });
                }
                Event::Restart(i) => {
                    eprintln!("mnemo dev: starting node {} again", dev.nodes[i].id);
                    dev.nodes[i].restarted = true;
                    if let Err(Failure(why)) = dev.spawn(i) {
                        eprintln!("mnemo dev: {why}; leaving it down");
                    }
                }
            },
        }
    }
}

fn how(status: &std::io::Result<ExitStatus>) -> String {
    status
        .as_ref()
        .map_or_else(ToString::to_string, ToString::to_string)
}

fn banner(dev: &Dev) {
    let (first, last) = (&dev.nodes[0].listen, &dev.nodes[dev.nodes.len() - 1].listen);
    println!(
        "mnemo dev: {} nodes on {first}..{}, data under {}",
        dev.nodes.len(),
        last.rsplit(':').next().unwrap_or_default(),
        dev.args.data_dir.display()
    );
    let node = if dev.args.base_port == 7401 {
        String::new()
    } else {
        format!(" --node {first}")
    };
    println!("try:  export MNEMO_CERTS_DIR={}", dev.certs_dir.display());
    println!("      mnemo remember{node} --space notes \"the standup moved to 10am\"");
    println!("      mnemo recall{node} --space notes \"when is standup\"");
    let second = dev.nodes.get(1).map_or(first, |n| &n.listen);
    println!("      mnemo cluster --node {second}");
    println!(
        "A node that dies is started again after {} s; Ctrl-C stops every node.",
        RESTART_AFTER.as_secs()
    );
}

/// Waits until every node sees all of them alive, so the first command a
/// person types is routed by a complete cluster.
async fn await_formed(addrs: &[String], certs_dir: &Path) -> Result<(), String> {
    use mnemo_proto::v1::StatusRequest;
    let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
    for addr in addrs {
        // Asked as the command line asks, with the operator's certificate.
        let common = Common {
            node: addr.clone(),
            json: false,
            timeout: 1_000,
            certs_dir: Some(certs_dir.to_path_buf()),
            token: None,
            insecure: false,
        };
        loop {
            let formed = async {
                let mut client = connect(&common).await.ok()?;
                let s = client.status(StatusRequest {}).await.ok()?.into_inner();
                let alive = s.members.iter().filter(|m| m.state == "alive").count();
                (alive == addrs.len() && s.partition == "connected").then_some(())
            };
            if formed.await.is_some() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "node {addr} did not see all {} nodes within {} s",
                    addrs.len(),
                    FORM_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Copies a node's log lines to our stderr, one whole line at a time and
/// marked with the node id, keeping the last few to explain a death.
async fn prefix_lines(
    id: String,
    stderr: tokio::process::ChildStderr,
    last: Arc<Mutex<VecDeque<String>>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{id}] {line}");
        let mut last = last.lock().expect("lines");
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}
