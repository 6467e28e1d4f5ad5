//! `mnemo node`: run one node until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use mnemo_node::DecayPolicy as Policy;
use mnemo_node::NodeConfig;
use serde::Deserialize;

use crate::args::NodeArgs;
use crate::client::Failure;

/// Settings a `--config` TOML file may hold; flags win over it.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<String>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    join: Vec<String>,
    replication_factor: Option<usize>,
    http: Option<SocketAddr>,
    consolidate_threshold: Option<f32>,
    decay_half_life: Option<String>,
    decay_floor: Option<f32>,
    expected_size: Option<usize>,
    breaker_open_timeout_ms: Option<u64>,
    hedge_ms: Option<u64>,
    anti_entropy_ms: Option<u64>,
    sync_rate_mib: Option<u64>,
    serving_threads: Option<usize>,
    max_connections: Option<usize>,
    connection_idle_secs: Option<u64>,
    checkpoint_mib: Option<u64>,
    certs_dir: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

/// Most `--serving-threads`: far more than any host's cores.
const MAX_SERVING_THREADS: usize = 1024;

/// File descriptors kept for what is not a client's gRPC connection: the
/// store's files, gossip, the HTTP port, connections to peers.
const RESERVED_FILES: u64 = 512;

/// Raises the process's open-file limit to the most the host allows (as a
/// server that holds many connections should; many hosts start processes
/// at 1024) and returns it.
fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
        1024
    })
}

/// The connection limit when none is asked for: the default, or what
/// `open_files` leaves room for beside [`RESERVED_FILES`] (at least 64).
fn default_max_connections(open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_FILES).max(64);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(mnemo_node::config::DEFAULT_MAX_CONNECTIONS)
}

/// Serving threads when none are asked for: one per core the node may use
/// (`available_parallelism` counts a cgroup's CPU quota), as a proxy runs
/// a worker per core.
fn default_serving_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_SERVING_THREADS)
}

fn config(args: NodeArgs) -> Result<NodeConfig, Failure> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure(format!("cannot read --config {}: {e}", path.display())))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| Failure(format!("--config {}: {e}", path.display())))?
        }
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7401)));
    let mut c = NodeConfig::new(
        args.id.or(file.id).unwrap_or_else(|| id_of(listen)),
        listen,
        args.data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("mnemo-data")),
    );
    c.join = if args.join.is_empty() {
        file.join
    } else {
        args.join
    };
    c.replication_factor = args
        .replication_factor
        .or(file.replication_factor)
        .unwrap_or(3);
    c.http = args.http.or(file.http);
    c.expected_size = args.expected_size.or(file.expected_size);
    if let Some(ms) = args
        .breaker_open_timeout_ms
        .or(file.breaker_open_timeout_ms)
    {
        c.breaker_open_timeout = std::time::Duration::from_millis(ms);
    }
    c.hedge_delay = args
        .hedge_ms
        .or(file.hedge_ms)
        .map(std::time::Duration::from_millis);
    if let Some(ms) = args.inject_latency_ms {
        c.inject_latency = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = args.anti_entropy_ms.or(file.anti_entropy_ms) {
        if ms == 0 {
            return Err(Failure("--anti-entropy-ms must be at least 1".into()));
        }
        c.anti_entropy_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(mib) = args.sync_rate_mib.or(file.sync_rate_mib) {
        if mib == 0 {
            return Err(Failure("--sync-rate-mib must be at least 1".into()));
        }
        c.sync_bytes_per_sec = mib.saturating_mul(1024 * 1024);
    }
    c.serving_threads = match args.serving_threads.or(file.serving_threads) {
        Some(n) if n > MAX_SERVING_THREADS => {
            return Err(Failure(format!(
                "--serving-threads must be at most {MAX_SERVING_THREADS}"
            )));
        }
        Some(n) => n,
        None => default_serving_threads(),
    };
    let open_files = raise_open_file_limit();
    c.max_connections = match args.max_connections.or(file.max_connections) {
        Some(0) => return Err(Failure("--max-connections must be at least 1".into())),
        Some(n) => n,
        None => default_max_connections(open_files),
    };
    if let Some(secs) = args.connection_idle_secs.or(file.connection_idle_secs) {
        c.connection_idle = (secs > 0).then(|| std::time::Duration::from_secs(secs));
    }
    if let Some(mib) = args.checkpoint_mib.or(file.checkpoint_mib) {
        if mib == 0 {
            return Err(Failure("--checkpoint-mib must be at least 1".into()));
        }
        c.store.checkpoint_bytes = mib.saturating_mul(1024 * 1024);
    }
    if let Some(t) = args.consolidate_threshold.or(file.consolidate_threshold) {
        c.consolidate_threshold = t;
    }
    c.decay = decay(
        args.decay_half_life.or(file.decay_half_life).as_deref(),
        args.decay_floor.or(file.decay_floor),
    )?;
    mnemo_node::validate_id(&c.id).map_err(|e| Failure(format!("--id: {e}")))?;
    mnemo_node::validate_threshold(c.consolidate_threshold)
        .map_err(|e| Failure(format!("--consolidate-threshold: {e}")))?;
    if c.replication_factor == 0 {
        return Err(Failure("--replication-factor must be at least 1".into()));
    }
    let certs_dir = args.certs_dir.or(file.certs_dir);
    c.security = security(&c, certs_dir.as_deref(), args.insecure || file.insecure)?;
    Ok(c)
}

/// How consolidation decays idle memories: `half_life` a duration (`30d`)
/// or `off`.
fn decay(half_life: Option<&str>, floor: Option<f32>) -> Result<Option<Policy>, Failure> {
    let default = NodeConfig::DEFAULT_DECAY;
    let half_life_ms = match half_life {
        None => default.half_life_ms,
        Some("off") => return Ok(None),
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                Failure(format!(
                    "--decay-half-life {text:?}: {e} (give a duration such as 30d or 12h, or off)"
                ))
            })?;
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        }
    };
    let policy = Policy {
        half_life_ms,
        floor: floor.unwrap_or(default.floor),
    };
    mnemo_node::validate_decay(policy).map_err(|e| {
        let flag = if e.to_string().contains("floor") {
            "--decay-floor"
        } else {
            "--decay-half-life"
        };
        Failure(format!("{flag}: {e}"))
    })?;
    Ok(Some(policy))
}

/// A node's default id, from its listen address (`127.0.0.1-7401`): two
/// nodes on one machine never share it by accident.
fn id_of(listen: SocketAddr) -> String {
    let host: String = listen
        .ip()
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", listen.port())
}

/// The node's certificates, or the checks that let it run without: secure
/// unless told otherwise, and then only where no one else can reach it.
fn security(
    c: &NodeConfig,
    certs_dir: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Option<std::sync::Arc<mnemo_node::security::Security>>, Failure> {
    match (certs_dir, insecure) {
        (Some(_), true) => Err(Failure(
            "--certs-dir and --insecure contradict each other; pass one".into(),
        )),
        (Some(dir), false) => mnemo_node::security::Security::load(dir, &c.id)
            .map(|s| Some(std::sync::Arc::new(s)))
            .map_err(|e| Failure(format!("--certs-dir: {e}"))),
        (None, true) => {
            for (flag, addr) in [("--listen", Some(c.listen)), ("--http", c.http)] {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(Failure(format!(
                        "--insecure serves without TLS or authentication, so it listens on \
                         loopback addresses only, and {flag} {addr} is not one; make \
                         certificates with `mnemo certs create --dir DIR --nodes {}` and \
                         pass --certs-dir DIR",
                        c.id
                    )));
                }
            }
            Ok(None)
        }
        (None, false) => Err(Failure(format!(
            "mnemo node needs certificates: make them with `mnemo certs create --dir DIR \
             --nodes {}` and pass --certs-dir DIR (or MNEMO_CERTS_DIR), or pass --insecure \
             for a node on this machine only",
            c.id
        ))),
    }
}

pub(crate) async fn run(args: NodeArgs) -> Result<(), Failure> {
    let stop_on_eof = args.stop_on_stdin_eof;
    let config = config(args)?;
    let (id, dir) = (config.id.clone(), config.data_dir.clone());
    let secure = config.security.is_some();
    if config.http.is_some() {
        // Installed before anything records, so no early metric is lost.
        mnemo_node::http::prometheus();
    }
    let running = mnemo_node::start(config).await.map_err(|e| {
        Failure(format!(
            "node {id} (data in {}) cannot start: {e}",
            dir.display()
        ))
    })?;
    if let Some(http) = running.http_addr {
        let scheme = if secure { "https" } else { "http" };
        eprintln!(
            "mnemo node {id} metrics on {scheme}://{http}/metrics, HTTP API on \
             {scheme}://{http}/v1 (OpenAPI at /v1/openapi.json), probes /livez and /readyz"
        );
    }
    eprintln!(
        "mnemo node {id} serving on {} (data in {})",
        running.local_addr,
        dir.display()
    );
    let stop = running.stopper();
    tokio::spawn(async move {
        if stop_on_eof {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stdin_closed() => {
                    // The process that started us (mnemo dev) is gone, and
                    // so are, most likely, the peers a hand-over would go
                    // to: end at once, as after a SIGKILL, which loses
                    // nothing acknowledged. Not a word on stderr: it was
                    // that process's pipe, and writing there now fails.
                    std::process::exit(0);
                }
            }
        } else {
            shutdown_signal().await;
        }
        let _ = stop.send(true);
    });
    // A graceful stop waits for open connections to close; peers stopping
    // at the same moment may never close theirs. Everything acknowledged is
    // already durable, so after a grace period the process just ends.
    let mut left = running.has_left();
    let node = std::sync::Arc::clone(&running.node);
    let stopped = tokio::select! {
        stopped = running.wait() => stopped.map_err(|e| Failure(format!("node {id} stopped: {e}"))),
        () = async {
            let _ = left.wait_for(|l| *l).await;
            tokio::time::sleep(STOP_GRACE).await;
        } => {
            tracing::warn!(grace = ?STOP_GRACE, "connections still open after stopping; exiting");
            Ok(())
        }
    };
    match node.fatal() {
        Some(why) => Err(Failure(format!("node {id} stopped: {why}"))),
        None => stopped,
    }
}

/// Longest a stopping node that has left waits for its connections to
/// close (the hand-over before has its own limit).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Standard input reaches its end (the process holding it went away).
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../node.example.toml");

    /// The example file is valid, and names every key a file may hold
    /// (those whose default depends on the host, commented out, so that a
    /// copy keeps the host's default).
    #[test]
    fn the_example_configuration_is_complete() {
        let parsed: FileConfig = toml::from_str(EXAMPLE).expect("the example parses");
        let keys = serde_json::to_value(FileConfig::default()).expect("keys");
        for key in keys.as_object().expect("a table").keys() {
            let set = |l: &str| l.starts_with(&format!("{key} = "));
            let by_host = ["serving_threads", "max_connections"].contains(&key.as_str());
            assert!(
                EXAMPLE
                    .lines()
                    .any(|l| set(l) || (by_host && l.strip_prefix("# ").is_some_and(set))),
                "node.example.toml lacks {key}"
            );
        }
        assert_eq!(parsed.id.as_deref(), Some("n1"));
        assert_eq!(parsed.join.len(), 2);
    }

    fn node_args(flags: &[&str]) -> NodeArgs {
        use clap::Parser;
        let argv = ["mnemo", "node", "--insecure"].iter().chain(flags);
        match crate::args::Cli::try_parse_from(argv)
            .expect("valid flags")
            .command
        {
            crate::args::Command::Node(node) => node,
            other => panic!("not a node command: {other:?}"),
        }
    }

    /// One serving thread per core unless told otherwise; 0 is the
    /// shared runtime; too many is refused, naming the flag and the limit.
    #[test]
    fn serving_threads_default_to_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = |flags: &[&str]| config(node_args(flags)).map(|c| c.serving_threads);
        assert_eq!(threads(&[]).ok(), Some(cores));
        assert_eq!(threads(&["--serving-threads", "0"]).ok(), Some(0));
        let Err(Failure(e)) = threads(&["--serving-threads", "1025"]) else {
            panic!("1025 serving threads accepted");
        };
        assert_eq!(e, "--serving-threads must be at most 1024");
    }

    /// The connection limit leaves room for the node's own files, and
    /// 0 is refused, naming the flag.
    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        assert_eq!(default_max_connections(1024), 512);
        assert_eq!(default_max_connections(1 << 20), 10_000);
        assert_eq!(default_max_connections(100), 64);
        let limit = |flags: &[&str]| config(node_args(flags)).map(|c| c.max_connections);
        assert_eq!(limit(&["--max-connections", "3"]).ok(), Some(3));
        let Err(Failure(e)) = limit(&["--max-connections", "0"]) else {
            panic!("a limit of 0 accepted");
        };
        assert_eq!(e, "--max-connections must be at least 1");
    }

    #[test]
    fn default_ids_come_from_the_listen_address() {
        assert_eq!(id_of("127.0.0.1:7401".parse().unwrap()), "127.0.0.1-7401");
        let v6 = id_of("[::1]:7402".parse().unwrap());
        assert_eq!(v6, "--1-7402");
        assert!(mnemo_node::validate_id(&v6).is_ok());
    }
}
