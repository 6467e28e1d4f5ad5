//! Real `mnemo node` processes for integration tests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use mnemo_proto::v1::mnemo_client::MnemoClient;
use tonic::transport::Channel;

/// A write of `content` under `id` into `space`.
pub fn remember(
    space: &str,
    id: &str,
    content: &str,
    ack: mnemo_proto::v1::Ack,
) -> mnemo_proto::v1::RememberRequest {
    mnemo_proto::v1::RememberRequest {
        space: space.into(),
        id: id.into(),
        content: content.into(),
        ack: ack as i32,
        ..Default::default()
    }
}

/// A recall of up to 1000 memories of `space` (every memory of a test
/// space, matching `cue` or not).
pub fn recall_all(space: &str, cue: &str) -> mnemo_proto::v1::RecallRequest {
    mnemo_proto::v1::RecallRequest {
        space: space.into(),
        cue: cue.into(),
        k: Some(1000),
        include_unmatched: true,
        ..Default::default()
    }
}

/// The ids a recall returned.
pub fn ids(r: &mnemo_proto::v1::RecallResponse) -> std::collections::BTreeSet<String> {
    r.memories
        .iter()
        .map(|m| m.memory.as_ref().expect("a memory").id.clone())
        .collect()
}

/// One HTTP/1.1 GET over a plain TCP stream; the whole response.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// The body of `path` on a secure node's HTTP port (TLS, no credentials:
/// for metrics and probes).
pub fn https_get(node: &NodeProcess, path: &str) -> String {
    let agent = https_agent(node.certs.as_ref().expect("a secure node"), None);
    let url = format!("https://{}{path}", node.http.as_ref().expect("--http"));
    agent
        .get(&url)
        .call()
        .expect("GET over TLS")
        .body_mut()
        .read_to_string()
        .expect("a text body")
}

/// The sum of every sample of `metric` in a Prometheus text page.
pub fn metric_sum(page: &str, metric: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The requests a `/metrics` page counts for `operation` in `role` with
/// `outcome` (a gRPC code's name, lower case).
pub fn requests_counted(page: &str, operation: &str, role: &str, outcome: &str) -> f64 {
    let labels = [
        format!("operation=\"{operation}\""),
        format!("role=\"{role}\""),
        format!("outcome=\"{outcome}\""),
    ];
    let series = page
        .lines()
        .filter(|l| {
            l.starts_with("mnemo_request_duration_seconds_count{")
                && labels.iter().all(|label| l.contains(label.as_str()))
        })
        .collect::<Vec<_>>()
        .join("\n");
    metric_sum(&series, "mnemo_request_duration_seconds_count")
}

/// Meeting `i` of the benchmarks ("meeting i is in room i % 7", id `m{i}`)
/// written into `space`, durable on a quorum.
pub async fn remember_meeting(client: &mut MnemoClient<Channel>, space: &str, i: usize) {
    client
        .remember(mnemo_proto::v1::RememberRequest {
            space: space.into(),
            id: format!("m{i}"),
            content: format!("meeting {i} is in room {}", i % 7),
            ack: mnemo_proto::v1::Ack::Quorum as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A TCP port on 127.0.0.1 that is free right now (for a peer program a
/// benchmark starts: Redis, nginx).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `message` marked as forwarded by a node: served from the receiver's own
/// copy, never routed on.
fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(mnemo_proto::FORWARDED_BY, "test".parse().unwrap());
    request
}

/// The `p` quantile (0..=1) of sorted durations, for benchmarks.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A duration in microseconds, for benchmark reports.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// For process-level benchmarks: the command line (`None` when cargo only
/// lists benchmarks) and a 2-worker runtime to run one on.
pub fn bench_setup() -> Option<(Vec<String>, tokio::runtime::Runtime)> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    Some((args, rt))
}

/// The value after `--name` on a benchmark's command line, or `default`.
pub fn bench_arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// An HTTPS client trusting the cluster's CA, presenting `certs/<name>`
/// when given.
pub fn https_agent(certs: &Path, name: Option<&str>) -> ureq::Agent {
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    let ca = ureq::tls::Certificate::from_pem(&read("ca.crt")).unwrap();
    let mut tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            ca,
        ])))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ));
    if let Some(name) = name {
        let crt = ureq::tls::Certificate::from_pem(&read(&format!("{name}.crt"))).unwrap();
        let key = ureq::tls::PrivateKey::from_pem(&read(&format!("{name}.key"))).unwrap();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[crt], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .build()
        .into()
}

/// The `mnemo` binary under test, for insecure nodes on loopback (the
/// caller's environment cannot change that).
pub fn mnemo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnemo"));
    command
        .env("MNEMO_INSECURE", "1")
        .env_remove("MNEMO_CERTS_DIR")
        .env_remove("MNEMO_TOKEN");
    command
}

/// The `mnemo` binary under test, using the certificates in `certs`.
pub fn mnemo_with_certs(certs: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnemo"));
    command
        .env("MNEMO_CERTS_DIR", certs)
        .env_remove("MNEMO_INSECURE")
        .env_remove("MNEMO_TOKEN");
    command
}

/// Makes a certificates directory for nodes `n1..=nodes` with `mnemo
/// certs create`.
pub fn make_certs(dir: &Path, nodes: usize) {
    let ids: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let out = mnemo()
        .args(["certs", "create", "--nodes", &ids.join(",")])
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run mnemo certs create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client of a secure node at `addr`, with the client certificate of
/// `certs` (and its CA), whatever host name the address has.
pub async fn secure_client(addr: SocketAddr, certs: &Path) -> MnemoClient<Channel> {
    client_as(addr, certs, "client").await
}

/// A client of a secure node at `addr` presenting `certs/<name>.crt`: a
/// node certificate's name makes it a peer node.
pub async fn client_as(addr: SocketAddr, certs: &Path, name: &str) -> MnemoClient<Channel> {
    MnemoClient::new(tls_channel(addr, certs, Some(name)).await)
}

/// A TLS channel to the node at `addr`, checked against `certs/ca.crt`
/// whatever host name the address has, presenting `certs/<name>.crt` when
/// given (none: a token holder's channel).
pub async fn tls_channel(addr: SocketAddr, certs: &Path, name: Option<&str>) -> Channel {
    let read = |file: &str| std::fs::read(certs.join(file)).unwrap();
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.crt")))
        .domain_name("localhost");
    if let Some(name) = name {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(&format!("{name}.crt")),
            read(&format!("{name}.key")),
        ));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("connect over TLS")
}

enum Event {
    Serving(Option<SocketAddr>),
    Http(String),
}

/// A running node process; killed when dropped.
pub struct NodeProcess {
    pub id: String,
    pub addr: SocketAddr,
    /// `host:port` of `/metrics` and `/health`, when started with `--http`.
    pub http: Option<String>,
    pub dir: PathBuf,
    /// The certificates directory of a secure node.
    pub certs: Option<PathBuf>,
    /// Set if the node, stopping, gave up waiting for its connections to
    /// close (it logs so, then exits anyway).
    pub lingered: Arc<std::sync::atomic::AtomicBool>,
    child: Child,
}

impl NodeProcess {
    /// Starts `mnemo node` with `extra` flags and waits until it serves.
    pub fn start(id: &str, dir: &Path, listen: &str, extra: &[&str]) -> NodeProcess {
        NodeProcess::start_with(mnemo(), None, id, dir, listen, extra)
    }

    /// Starts a secure `mnemo node` with the certificates in `certs`.
    pub fn start_secure(
        certs: &Path,
        id: &str,
        dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> NodeProcess {
        NodeProcess::start_with(mnemo_with_certs(certs), Some(certs), id, dir, listen, extra)
    }

    /// Starts a secure `mnemo node` inside network namespace `netns` (its
    /// address is not loopback, so it cannot be insecure).
    pub fn start_in(
        netns: &str,
        certs: &Path,
        id: &str,
        dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> NodeProcess {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_mnemo")])
            .env("MNEMO_CERTS_DIR", certs)
            .env_remove("MNEMO_INSECURE");
        NodeProcess::start_with(command, Some(certs), id, dir, listen, extra)
    }

    fn start_with(
        mut command: Command,
        certs: Option<&Path>,
        id: &str,
        dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> NodeProcess {
        let mut child = command
            .args(["node", "--id", id, "--listen", listen])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mnemo node");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let lingered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lingering = Arc::clone(&lingered);
        let tag = id.to_owned();
        std::thread::spawn(move || {
            // Keep draining so the node never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if line.contains("connections still open after stopping") {
                    lingering.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if let Some(rest) = line.split(" serving on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(Event::Serving(addr.parse::<SocketAddr>().ok()));
                }
                if let Some(rest) = line
                    .split(" metrics on ")
                    .nth(1)
                    .and_then(|r| r.split_once("://").map(|(_, a)| a))
                {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(Event::Http(addr));
                }
            }
        });
        // The timeout only guards against a node that never starts. The
        // http line, when asked for, comes before the serving line.
        let mut http = None;
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Event::Http(a)) => http = Some(a),
                Ok(Event::Serving(Some(a))) => break a,
                _ => panic!("node {id} did not report its address"),
            }
        };
        NodeProcess {
            id: id.into(),
            addr,
            http,
            dir: dir.into(),
            certs: certs.map(Path::to_path_buf),
            lingered,
            child,
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The names of the process's threads, from `/proc`.
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap();
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to end (a graceful leave).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("wait for the node")
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the node's process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits until a SIGSTOP took effect: the process is stopped (`T` in
    /// `/proc/<pid>/stat`), not merely signalled.
    pub async fn await_stopped(&self) {
        let pid = self.child.id();
        eventually(&format!("{} to be stopped", self.id), || async move {
            (proc_stat(pid)?.first()? == "T").then_some(())
        })
        .await;
    }

    /// Waits for the process to end by itself (after a decommission).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the node")
    }

    pub fn node_flag(&self) -> String {
        self.addr.to_string()
    }

    pub async fn client(&self) -> MnemoClient<Channel> {
        match &self.certs {
            Some(certs) => secure_client(self.addr, certs).await,
            None => MnemoClient::connect(format!("http://{}", self.addr))
                .await
                .expect("connect"),
        }
    }

    /// A client that presents this node's own certificate, as a peer node
    /// does (forwarded requests are honoured only from nodes).
    pub async fn peer_client(&self) -> MnemoClient<Channel> {
        match &self.certs {
            Some(certs) => client_as(self.addr, certs, &self.id).await,
            None => self.client().await,
        }
    }

    /// The `mnemo` command set up to talk to this node.
    pub fn command(&self) -> Command {
        match &self.certs {
            Some(certs) => mnemo_with_certs(certs),
            None => mnemo(),
        }
    }

    /// Runs a client command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .args(["--node", &self.node_flag()])
            .output()
            .expect("run mnemo")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How long a test waits for the cluster to reach a state before failing.
/// A guard against hanging, not a synchronisation: every wait polls for the
/// state itself.
const GUARD: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, failing the test after [`GUARD`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    observe(what, || {
        let polled = check();
        async move { polled.await.ok_or_else(String::new) }
    })
    .await
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces): the state first, then the parent's pid, ... (`proc(5)`'s field
/// n is at n − 3). `None` once the process is gone.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Polls `check` until it returns `Ok`, failing the test after [`GUARD`]
/// with what the last `Err` said was still missing.
pub async fn observe<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let missing = match check().await {
            Ok(v) => return v,
            Err(missing) => missing,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {missing}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Flags every cluster test node gets: a short breaker open timeout so a
/// restarted node is probed within the test.
pub const TEST_NODE_FLAGS: &[&str] = &[
    "--breaker-open-timeout-ms",
    "500",
    "--anti-entropy-ms",
    "1000",
];

impl NodeProcess {
    pub async fn status(&self) -> mnemo_proto::v1::StatusResponse {
        self.client()
            .await
            .status(mnemo_proto::v1::StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// A routed recall through this node; a failure fails the test, naming
    /// the node.
    pub async fn recall(
        &self,
        request: mnemo_proto::v1::RecallRequest,
    ) -> mnemo_proto::v1::RecallResponse {
        let space = request.space.clone();
        self.client()
            .await
            .recall(request)
            .await
            .unwrap_or_else(|e| panic!("recall of {space} through {}: {e}", self.id))
            .into_inner()
    }

    /// Recall served by this node's own data: the request carries the
    /// forwarding marker, so the node never routes it elsewhere.
    pub async fn recall_local(
        &self,
        space: &str,
        cue: &str,
    ) -> Result<mnemo_proto::v1::RecallResponse, tonic::Status> {
        let request = forwarded(mnemo_proto::v1::RecallRequest {
            space: space.into(),
            cue: cue.into(),
            k: Some(1000),
            include_unmatched: true,
            ..Default::default()
        });
        Ok(self.peer_client().await.recall(request).await?.into_inner())
    }

    /// The first page of this node's own copy of `space` (forwarded, so
    /// never routed elsewhere; a list stamps nothing, unlike a recall).
    pub async fn list_local(
        &self,
        space: &str,
    ) -> Result<mnemo_proto::v1::ListResponse, tonic::Status> {
        let request = forwarded(mnemo_proto::v1::ListRequest {
            space: space.into(),
            ..Default::default()
        });
        Ok(self.peer_client().await.list(request).await?.into_inner())
    }

    /// Waits until this node holds at least `n` live memories of `space`.
    pub async fn await_memories(&self, space: &str, n: u64) {
        eventually(
            &format!("{} to hold {n} memories of {space}", self.id),
            || async {
                let s = self.status().await;
                s.spaces
                    .iter()
                    .any(|x| x.name == space && x.memories >= n)
                    .then_some(())
            },
        )
        .await;
    }

    /// Consecutive failures this node's breaker for `node` counted, if it has one.
    pub async fn breaker_failures(&self, node: &str) -> Option<u32> {
        self.status()
            .await
            .breakers
            .iter()
            .find(|b| b.node == node)
            .map(|b| b.consecutive_failures)
    }

    /// Sends recalls of `space` until this node no longer sends anything to
    /// `dead`: its breaker for it is open (returns true), or membership took
    /// it out of the topology first (returns false).
    pub async fn await_not_dialing(
        &self,
        dead: &str,
        space: &str,
        client: &mut MnemoClient<Channel>,
    ) -> bool {
        eventually(&format!("{} to stop dialing {dead}", self.id), || {
            let mut client = client.clone();
            async move {
                let _ = client
                    .recall(mnemo_proto::v1::RecallRequest {
                        space: space.into(),
                        cue: "x".into(),
                        ..Default::default()
                    })
                    .await;
                let s = self.status().await;
                if s.breakers
                    .iter()
                    .any(|b| b.node == dead && b.state == "open")
                {
                    return Some(true);
                }
                let gone = !s.members.iter().any(|m| m.id == dead && m.state == "alive");
                gone.then_some(false)
            }
        })
        .await
    }

    /// Sends traffic until this node's breaker for `node` is in `state`.
    pub async fn await_breaker(&self, node: &str, state: &str, client: &mut MnemoClient<Channel>) {
        eventually(
            &format!("breaker for {node} on {} to be {state}", self.id),
            || {
                let mut client = client.clone();
                async move {
                    let _ = client
                        .query(mnemo_proto::v1::QueryRequest {
                            spaces: (0..16).map(|i| format!("spread-{i}")).collect(),
                            cue: "x".into(),
                            ..Default::default()
                        })
                        .await;
                    let s = self.status().await;
                    s.breakers
                        .iter()
                        .any(|b| b.node == node && b.state == state)
                        .then_some(())
                }
            },
        )
        .await;
    }
}

/// A cluster of real node processes on loopback.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    /// Flags every node of this cluster was started with.
    flags: Vec<String>,
    dir: tempfile::TempDir,
    /// The certificates of a secure cluster.
    pub certs: Option<PathBuf>,
}

impl Cluster {
    /// Starts `n` nodes (n1 is the seed) and waits until every node sees
    /// all of them alive and itself connected.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], every node also getting `extra` flags.
    pub async fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let mut flags = TEST_NODE_FLAGS.to_vec();
        flags.extend(extra);
        Cluster::start_exactly(n, &flags).await
    }

    /// `n` nodes with exactly `flags` (none of the test settings: for
    /// measurements of the defaults).
    pub async fn start_exactly(n: usize, flags: &[&str]) -> Cluster {
        Cluster::start_in_dir(tempfile::tempdir().unwrap(), None, n, flags).await
    }

    /// `n` secure nodes (with the test settings), certificates made by
    /// `mnemo certs create` under the cluster's directory.
    pub async fn start_secure(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        make_certs(&certs, n);
        let mut flags = TEST_NODE_FLAGS.to_vec();
        flags.extend(extra);
        Cluster::start_in_dir(dir, Some(certs), n, &flags).await
    }

    async fn start_in_dir(
        dir: tempfile::TempDir,
        certs: Option<PathBuf>,
        n: usize,
        flags: &[&str],
    ) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            dir,
            certs,
        };
        let first = cluster.start_node("n1", "127.0.0.1:0", &cluster.flags.clone());
        let seed = first.addr.to_string();
        cluster.nodes.push(first);
        for i in 2..=n {
            let node = cluster.start_node(
                &format!("n{i}"),
                "127.0.0.1:0",
                &cluster.flags_joining(&seed),
            );
            cluster.nodes.push(node);
        }
        cluster.await_formed().await;
        cluster
    }

    /// Starts node `id` of this cluster (secure if the cluster is) on
    /// `listen`, its data under the cluster's directory.
    fn start_node(&self, id: &str, listen: &str, flags: &[String]) -> NodeProcess {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let dir = self.dir.path().join(id);
        match &self.certs {
            Some(certs) => NodeProcess::start_secure(certs, id, &dir, listen, &flags),
            None => NodeProcess::start(id, &dir, listen, &flags),
        }
    }

    /// A cluster of nodes started elsewhere (for instance in network
    /// namespaces), with the directory their data lives under.
    pub fn assemble(nodes: Vec<NodeProcess>, dir: tempfile::TempDir) -> Cluster {
        Cluster {
            nodes,
            flags: Vec::new(),
            dir,
            certs: None,
        }
    }

    fn flags_joining(&self, through: &str) -> Vec<String> {
        let mut flags = self.flags.clone();
        flags.extend(["--join".to_owned(), through.to_owned()]);
        flags
    }

    /// Starts a new node `id` that joins through `through` and waits until
    /// every node sees the whole cluster.
    pub async fn join(&mut self, id: &str, through: &str) {
        let node = self.start_node(id, "127.0.0.1:0", &self.flags_joining(through));
        self.nodes.push(node);
        self.await_formed().await;
    }

    /// Removes a stopped node from the cluster's list.
    pub fn remove(&mut self, id: &str) -> NodeProcess {
        let i = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .expect("node exists");
        self.nodes.remove(i)
    }

    /// The holders of `space` (primary first), once the cluster agrees.
    pub async fn holders(&self, space: &str) -> Vec<String> {
        let p = self.agreed_placement(space).await;
        p.primary
            .iter()
            .chain(&p.replicas)
            .map(|n| n.id.clone())
            .collect()
    }

    /// Waits until every holder of each space has the same digest and
    /// serves it (no catch-up pending): anti-entropy has converged.
    pub async fn await_converged(&self, spaces: &[String]) {
        for space in spaces {
            let holders = self.holders(space).await;
            observe(
                &format!("holders {holders:?} of {space} to converge"),
                || async {
                    let mut seen = Vec::new();
                    for h in &holders {
                        let s = self.node(h).status().await;
                        seen.push(match s.spaces.iter().find(|x| &x.name == space) {
                            Some(d) => (d.digest.clone(), d.catching_up, d.memories),
                            None => (String::from("absent"), false, 0),
                        });
                    }
                    let converged = seen
                        .iter()
                        .all(|(digest, catching_up, _)| !catching_up && digest != "absent")
                        && seen.windows(2).all(|w| w[0].0 == w[1].0);
                    if converged {
                        return Ok(());
                    }
                    Err(holders
                        .iter()
                        .zip(&seen)
                        .map(|(h, (digest, catching_up, memories))| {
                            format!("{h}: digest {digest}, {memories} memories, catching up {catching_up}")
                        })
                        .collect::<Vec<_>>()
                        .join("; "))
                },
            )
            .await;
        }
    }

    /// Waits until every running node sees every other alive and is connected.
    pub async fn await_formed(&self) {
        let n = self.nodes.len();
        for node in &self.nodes {
            observe(&format!("{} to see {n} alive members", node.id), || async {
                let s = node.status().await;
                let alive = s.members.iter().filter(|m| m.state == "alive").count();
                if alive == n && s.partition == "connected" {
                    return Ok(());
                }
                let members: Vec<String> = s
                    .members
                    .iter()
                    .map(|m| format!("{} {}", m.id, m.state))
                    .collect();
                Err(format!("{}, members {members:?}", s.partition))
            })
            .await;
        }
    }

    pub fn node(&self, id: &str) -> &NodeProcess {
        self.nodes.iter().find(|n| n.id == id).expect("node exists")
    }

    pub fn node_mut(&mut self, id: &str) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("node exists")
    }

    pub fn node_other_than(&self, ids: &[&str]) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|n| !ids.contains(&n.id.as_str()))
            .expect("another node")
    }

    /// Starts a killed node again on its address and data directory, and
    /// waits until the cluster has formed again.
    pub async fn restart(&mut self, id: &str) {
        // Join through any other node: the restarted one may be the seed.
        let other = self.node_other_than(&[id]).addr.to_string();
        self.start_again(id, &other);
        self.await_formed().await;
    }

    /// Starts a killed node again on its address and data directory,
    /// joining through `through`, and returns as soon as it serves (before
    /// it has rejoined or caught up).
    pub fn start_again(&mut self, id: &str, through: &str) {
        self.start_again_with(id, through, &[]);
    }

    /// Like [`Cluster::start_again`], with `extra` flags for this start.
    pub fn start_again_with(&mut self, id: &str, through: &str, extra: &[&str]) {
        let mut flags = self.flags_joining(through);
        flags.extend(extra.iter().map(|f| (*f).to_owned()));
        let addr = self.node(id).addr.to_string();
        let node = self.start_node(id, &addr, &flags);
        *self.node_mut(id) = node;
    }

    /// Asks every node where `space` lives and checks they agree.
    pub async fn locate_everywhere(&self, space: &str) -> mnemo_proto::v1::LocateResponse {
        let answers = self.locate_all(space).await;
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "locate disagrees: {answers:?}"
        );
        answers.into_iter().next().expect("a node")
    }

    /// Waits until every node places `space` the same way (views converge
    /// a moment after membership changes) and returns that placement.
    pub async fn agreed_placement(&self, space: &str) -> mnemo_proto::v1::LocateResponse {
        eventually(&format!("every node to place {space} alike"), || async {
            let answers = self.locate_all(space).await;
            answers
                .windows(2)
                .all(|w| w[0] == w[1])
                .then(|| answers.into_iter().next().expect("a node"))
        })
        .await
    }

    async fn locate_all(&self, space: &str) -> Vec<mnemo_proto::v1::LocateResponse> {
        let mut answers = Vec::new();
        for node in &self.nodes {
            let mut r = node
                .client()
                .await
                .locate(mnemo_proto::v1::LocateRequest {
                    space: space.into(),
                })
                .await
                .expect("locate")
                .into_inner();
            r.epoch = 0;
            answers.push(r);
        }
        answers
    }
}
