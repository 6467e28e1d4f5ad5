//! What a hop costs: the same recall (k = 5 over 100 memories) sent straight
//! to the space's primary, sent to another node that forwards it to the
//! primary, and sent through nginx (`grpc_pass`, a dedicated proxy) to the
//! primary. Rounds of the three are interleaved so they share the machine's
//! conditions; each runs at concurrency 1 and 8 (one connection per
//! concurrent caller). Prints percentiles of each, what each hop adds over
//! the direct call, how far the forward's addition is beyond nginx's, and
//! the CPU each path's processes spent per call (the primary, and the
//! forwarding node or nginx's workers).
//! Numbers are printed, never asserted.
//!
//! It runs twice: nodes serving on their shared multi-threaded runtime
//! (`--serving-threads 0`), then with `--serving-threads` set to the
//! host's cores (the default: each thread alone with its connections, see
//! the node's `serving` module).
//!
//! `cargo bench -p mnemo --bench hop` (`-- --samples N` per path and
//! concurrency, default 10 000 so that a p99 rests on 100 samples;
//! `-- --only forwarded` runs one path, to profile it;
//! `-- --serving-threads N` runs one mode; `-- --one-connection` has each
//! path's 32 concurrent callers share one connection instead, as one
//! multiplexing client would). nginx is Debian's `nginx-light`: found on
//! `PATH` or in `/usr/sbin`, or installed with `apt-get` when running as
//! root; when it cannot be had, its rows say why and the rest still runs.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::{Cluster, micros, percentile};
use tonic::transport::Channel;

type Client = v1::mnemo_client::MnemoClient<Channel>;

const SPACE: &str = "hop";

fn recall() -> v1::RecallRequest {
    v1::RecallRequest {
        space: SPACE.into(),
        cue: "where is the meeting".into(),
        k: Some(5),
        ..Default::default()
    }
}

/// nginx's binary: on the machine, or installed from Debian.
fn nginx_binary() -> Result<PathBuf, String> {
    let found = || {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(p) = found() {
        return Ok(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        return Err(
            "nginx is not installed and this is not root (apt-get install nginx-light)".into(),
        );
    }
    eprintln!("installing nginx-light with apt-get ...");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "nginx-light"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // A package's service may have started: this benchmark runs its own.
    let _ = Command::new("nginx").args(["-s", "stop"]).status();
    match found() {
        Some(p) if installed => Ok(p),
        _ => Err("apt-get install nginx-light failed".into()),
    }
}

/// An nginx proxying gRPC (h2c) to one upstream; stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers, which a
        // killed master would leave running.
        let pid = self.child.id().to_string();
        let stopped = Command::new("kill").args(["-TERM", &pid]).status();
        if !stopped.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn start_nginx(upstream: SocketAddr) -> Result<Nginx, String> {
    let binary = nginx_binary()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let d = dir.path().display();
    // As nginx is deployed in front of gRPC services: a worker per core,
    // connections kept alive both ways (without a cap on requests per
    // connection), no logging on the request path.
    let config = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         keepalive_requests 1000000;\n\
         upstream primary {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n\
         server {{\n    listen {addr} http2;\n    location / {{ grpc_pass grpc://primary; }}\n  }}\n}}\n"
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).map_err(|e| e.to_string())?;
    let child = Command::new(&binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let nginx = Nginx {
        child,
        addr,
        _dir: dir,
    };
    // Serving once it accepts connections (a benchmark may poll).
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("nginx did not start listening within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(nginx)
}

/// `n` clients of `addr`: on one connection if `shared`, else each on its
/// own.
async fn clients(addr: SocketAddr, n: usize, shared: bool) -> Vec<Client> {
    if shared {
        let client = Client::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        return vec![client; n];
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            Client::connect(format!("http://{addr}"))
                .await
                .expect("connect"),
        );
    }
    out
}

/// `per_client` recalls on each client at once; every latency.
async fn measure(clients: &[Client], per_client: usize, primary: &str) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let mut c = c.clone();
        let primary = primary.to_owned();
        tasks.spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let start = Instant::now();
                let r = c.recall(recall()).await.expect("recall").into_inner();
                times.push(start.elapsed());
                assert_eq!(r.served_by, primary);
                assert_eq!(r.memories.len(), 5);
            }
            times
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

struct Path {
    name: &'static str,
    clients: Vec<Client>,
    times: Vec<Duration>,
    /// The processes of the hop (none for the direct call).
    hop: Vec<u32>,
    /// CPU the primary and the hop spent on this path's rounds.
    cpu: (Duration, Duration),
}

impl Path {
    fn new(name: &'static str, clients: Vec<Client>, hop: Vec<u32>) -> Self {
        Path {
            name,
            clients,
            times: Vec::new(),
            hop,
            cpu: Default::default(),
        }
    }
}

/// CPU time (user and system) `pids` have used so far, from `/proc`.
fn cpu_of(pids: &[u32], tick: Duration) -> Duration {
    pids.iter()
        .filter_map(|&pid| support::proc_stat(pid))
        .map(|fields| {
            // utime and stime (`proc(5)`'s fields 14 and 15), in ticks.
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            tick * (ticks(11) + ticks(12))
        })
        .sum()
}

/// The length of a `/proc` clock tick (`getconf CLK_TCK`, 100 on Linux).
fn clock_tick() -> Duration {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<u32>().ok())
        .unwrap_or(100);
    Duration::from_secs(1) / hz
}

/// nginx's workers: the children of its master.
fn nginx_workers(master: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            support::proc_stat(pid).is_some_and(|f| f.get(1) == Some(&master.to_string()))
        })
        .collect()
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let samples: usize = support::bench_arg(&args, "--samples", 10_000);
    let only: String = support::bench_arg(&args, "--only", String::new());
    let shared = args.iter().any(|a| a == "--one-connection");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let modes = match support::bench_arg::<usize>(&args, "--serving-threads", usize::MAX) {
        usize::MAX => vec![0, cores],
        n => vec![n],
    };
    rt.block_on(async move {
        for threads in modes {
            println!("\n--serving-threads {threads} (0: one shared runtime)");
            let flags = ["--serving-threads".to_owned(), threads.to_string()];
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            run(samples, &only, shared, &flags).await;
        }
    });
}

/// One cluster with `flags` on every node; prints the table (callers on
/// one connection per path if `shared`).
async fn run(samples: usize, only: &str, shared: bool, flags: &[&str]) {
    {
        let cluster = Cluster::start_with(3, flags).await;
        let mut c = cluster.nodes[0].client().await;
        for i in 0..100 {
            support::remember_meeting(&mut c, SPACE, i).await;
        }
        let primary = cluster.locate_everywhere(SPACE).await.primary.unwrap().id;
        let direct = cluster.node(&primary).addr;
        let forwarder = cluster.node_other_than(&[&primary]);
        println!(
            "primary {primary} (pid {}), forwarding node {} (pid {})",
            cluster.node(&primary).pid(),
            forwarder.id,
            forwarder.pid()
        );
        let (forwarder, forwarder_pid) = (forwarder.addr, forwarder.pid());
        let primary_pid = [cluster.node(&primary).pid()];
        let tick = clock_tick();
        let nginx = start_nginx(direct);
        if let Err(why) = &nginx {
            println!("nginx rows skipped: {why}");
        }
        println!(
            "recall k=5 over 100 memories, {samples} samples per path and concurrency, \
             interleaved rounds:"
        );
        println!(
            "{:>5}  {:<10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "conc", "path", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "+p50 µs", "+p99 µs"
        );
        let concurrencies: &[usize] = if shared { &[32] } else { &[1, 8] };
        for &concurrency in concurrencies {
            let mut paths = vec![
                Path::new(
                    "direct",
                    clients(direct, concurrency, shared).await,
                    Vec::new(),
                ),
                Path::new(
                    "forwarded",
                    clients(forwarder, concurrency, shared).await,
                    vec![forwarder_pid],
                ),
            ];
            if let Ok(n) = &nginx {
                let workers = nginx_workers(n.child.id());
                paths.push(Path::new(
                    "nginx",
                    clients(n.addr, concurrency, shared).await,
                    workers,
                ));
            }
            paths.retain(|p| only.is_empty() || p.name == only);
            let rounds = 10;
            let per_client = (samples / rounds / concurrency).max(1);
            for p in &paths {
                measure(&p.clients, per_client, &primary).await; // warm-up
            }
            for _ in 0..rounds {
                for p in &mut paths {
                    let before = (cpu_of(&primary_pid, tick), cpu_of(&p.hop, tick));
                    let t = measure(&p.clients, per_client, &primary).await;
                    p.cpu.0 += cpu_of(&primary_pid, tick).saturating_sub(before.0);
                    p.cpu.1 += cpu_of(&p.hop, tick).saturating_sub(before.1);
                    p.times.extend(t);
                }
            }
            for p in &mut paths {
                p.times.sort();
            }
            report(concurrency, &paths);
        }
    }
}

/// Prints one concurrency's rows: percentiles, what each path adds over
/// the direct call, CPU per call, and the verdict.
fn report(concurrency: usize, paths: &[Path]) {
    // What each path adds over the direct call (when it ran).
    let at = |name: &str, q: f64| {
        paths
            .iter()
            .find(|p| p.name == name)
            .map(|p| micros(percentile(&p.times, q)))
    };
    let added = |name: &str, q: f64| Some(at(name, q)? - at("direct", q)?);
    for p in paths {
        let q = |q: f64| micros(percentile(&p.times, q));
        let plus = |q: f64| added(p.name, q).unwrap_or_default();
        println!(
            "{concurrency:>5}  {:<10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1}",
            p.name,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            plus(0.5),
            plus(0.99)
        );
    }
    // Where the time goes, whatever the scheduler did: CPU per call
    // of the primary and of the hop's process (the forwarding node,
    // or nginx's workers), to within a clock tick per round.
    let per_call = |d: Duration, p: &Path| micros(d) / p.times.len().max(1) as f64;
    let cpu: Vec<String> = paths
        .iter()
        .map(|p| {
            let hop = if p.hop.is_empty() {
                String::new()
            } else {
                format!(" + hop {:.0}", per_call(p.cpu.1, p))
            };
            format!("{} primary {:.0}{hop}", p.name, per_call(p.cpu.0, p))
        })
        .collect();
    println!("{concurrency:>5}  CPU µs per call: {}", cpu.join("; "));
    // The verdict the project's target asks for: the forward adds
    // no more than nginx's hop (<= 0 here).
    let beyond = |q: f64| Some(added("forwarded", q)? - added("nginx", q)?);
    if let (Some(p50), Some(p99)) = (beyond(0.5), beyond(0.99)) {
        println!(
            "{concurrency:>5}  forwarded adds {p50:+.1} µs at p50 and {p99:+.1} µs at p99 \
             beyond what nginx adds"
        );
    }
}
