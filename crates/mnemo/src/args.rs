//! The command line, as DESIGN's contract names it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mnemo: a clustered store of memory spaces for AI agents.
#[derive(Debug, Parser)]
#[command(name = "mnemo", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one node.
    Node(NodeArgs),
    /// Run a local cluster of node processes; Ctrl-C stops them all.
    Dev(DevArgs),
    /// Write a memory into a space.
    Remember(RememberArgs),
    /// Rank a space's memories against a cue.
    Recall(RecallArgs),
    /// Forget a memory (writes a tombstone).
    Forget(ForgetArgs),
    /// Read one memory by id (or what consolidation merged it into).
    Get(GetArgs),
    /// Write every memory of a space to standard output, one JSON object a line.
    Export(ExportArgs),
    /// Remember every memory of a JSON-lines file (as `export` writes) into a space.
    Import(ImportArgs),
    /// Merge memories of a space that say the same thing (shows the plan first).
    Consolidate(ConsolidateArgs),
    /// One cue over several spaces.
    Query(QueryArgs),
    /// Where a space lives: its primary and replicas.
    Locate(LocateArgs),
    /// What the node sees: members, partition state, breakers, pool,
    /// replication and handoffs.
    Status(StatusArgs),
    /// Ask every member for its own view and print them side by side;
    /// exit 2 when the cluster is unhealthy (the problems are listed).
    Cluster(StatusArgs),
    /// Hand every space of the node at --node to the other holders, then
    /// make it leave the cluster and stop.
    Decommission(StatusArgs),
    /// Make TLS certificates and the cluster key (a CA, nodes, a client).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make bearer tokens that open some spaces to a client.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a completion script for a shell (for instance
    /// `mnemo completions bash > /etc/bash_completion.d/mnemo`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Make (or complete) a certificates directory: ca.crt/ca.key,
    /// <node>.crt/.key for each node, client.crt/.key and cluster.key.
    /// What exists is kept, so a new node's certificate joins the same CA.
    Create(CertsCreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CertsCreateArgs {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Node ids to make certificates for, comma separated.
    #[arg(long, value_name = "IDS", value_delimiter = ',', required = true)]
    pub(crate) nodes: Vec<String>,
    /// Host names and IP addresses clients reach the nodes by, comma
    /// separated.
    #[arg(
        long,
        value_name = "HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub(crate) hosts: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a token (alone on stdout) that opens the spaces matching the
    /// patterns; clients send it as `authorization: Bearer <token>`.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// Space-name patterns the token opens, comma separated; `*` matches
    /// any run of characters (`alice-*`).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',', required = true)]
    pub(crate) spaces: Vec<String>,
    /// The token may read but not write.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// How long the token works (`30d`, `12h`, `90m`); default: until the
    /// cluster key changes.
    #[arg(long, value_name = "DURATION")]
    pub(crate) expires: Option<String>,
    /// The certificates directory holding cluster.key.
    #[arg(long, env = "MNEMO_CERTS_DIR", value_name = "DIR")]
    pub(crate) certs_dir: PathBuf,
}

/// Flags every client command takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct Common {
    /// The node to talk to.
    #[arg(
        long,
        env = "MNEMO_NODE",
        default_value = "127.0.0.1:7401",
        global = true
    )]
    pub(crate) node: String,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Deadline of the whole operation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, global = true)]
    pub(crate) timeout: u64,
    /// Certificates directory: the node is checked against its ca.crt, and
    /// its client.crt/client.key are presented unless a token is given.
    #[arg(long, env = "MNEMO_CERTS_DIR", value_name = "DIR", global = true)]
    pub(crate) certs_dir: Option<PathBuf>,
    /// A bearer token (from `mnemo token create`) to present instead of a
    /// client certificate.
    #[arg(
        long,
        env = "MNEMO_TOKEN",
        value_name = "TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Talk plaintext to a node started with --insecure.
    #[arg(long, env = "MNEMO_INSECURE", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) insecure: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Stable node id, unique in the cluster [default: from --listen,
    /// e.g. 127.0.0.1-7401].
    #[arg(long, env = "MNEMO_ID")]
    pub(crate) id: Option<String>,
    /// gRPC (TCP) and gossip (UDP) address [default: 127.0.0.1:7401].
    #[arg(long, env = "MNEMO_LISTEN", value_name = "HOST:PORT")]
    pub(crate) listen: Option<SocketAddr>,
    /// Where the node keeps its data [default: mnemo-data].
    #[arg(long, env = "MNEMO_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Another node's listen address; repeat (or separate with commas) for
    /// more seeds [default: none, a cluster of its own].
    #[arg(
        long,
        env = "MNEMO_JOIN",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub(crate) join: Vec<String>,
    /// Copies of each space, primary included [default: 3].
    #[arg(long, env = "MNEMO_REPLICATION_FACTOR", value_name = "N")]
    pub(crate) replication_factor: Option<usize>,
    /// Serve the HTTP/JSON API, /metrics and the probes here [default:
    /// not served].
    #[arg(long, env = "MNEMO_HTTP", value_name = "HOST:PORT")]
    pub(crate) http: Option<SocketAddr>,
    /// Cluster size a majority is counted of [default: the largest seen].
    #[arg(long, env = "MNEMO_EXPECTED_SIZE", value_name = "N")]
    pub(crate) expected_size: Option<usize>,
    /// Hedge a recall to the next replica when the primary has not answered
    /// after this long [default: adaptive, about the primary's 95th
    /// percentile latency, at least 20 ms; 0 turns hedging off].
    #[arg(long, env = "MNEMO_HEDGE_MS", value_name = "MS")]
    pub(crate) hedge_ms: Option<u64>,
    /// For tests of slow nodes: delay every request this node serves.
    #[arg(long, value_name = "MS", hide = true)]
    pub(crate) inject_latency_ms: Option<u64>,
    /// Stop (gracefully) when standard input closes: `mnemo dev` holds it,
    /// so its nodes stop even when it is killed without a chance to stop
    /// them.
    #[arg(long, hide = true)]
    pub(crate) stop_on_stdin_eof: bool,
    /// How long a breaker stays open before it lets one probe through
    /// [default: 30000].
    #[arg(long, env = "MNEMO_BREAKER_OPEN_TIMEOUT_MS", value_name = "MS")]
    pub(crate) breaker_open_timeout_ms: Option<u64>,
    /// How often each space is compared with one other holder (anti-entropy;
    /// default 10000).
    #[arg(long, env = "MNEMO_ANTI_ENTROPY_MS", value_name = "MS")]
    pub(crate) anti_entropy_ms: Option<u64>,
    /// Most MiB per second anti-entropy, catch-up and hand-over move
    /// (default 64).
    #[arg(long, env = "MNEMO_SYNC_RATE_MIB", value_name = "MIB")]
    pub(crate) sync_rate_mib: Option<u64>,
    /// Threads serving gRPC connections, each alone with the connections
    /// it was handed, so that a forward never changes threads [default:
    /// one per core; 0: one runtime whose workers share all connections,
    /// for a host whose cores other busy processes share].
    #[arg(long, env = "MNEMO_SERVING_THREADS", value_name = "N")]
    pub(crate) serving_threads: Option<usize>,
    /// Most connections open at once on the gRPC and HTTP ports together,
    /// clients' and peers'; one more is closed as soon as it is accepted
    /// [default: 10000, or less where the open-file limit leaves less
    /// room].
    #[arg(long, env = "MNEMO_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Close a client's connection once it has carried no request for
    /// this many seconds, or said nothing within 30 s of connecting (0:
    /// never); members' connections are kept [default: 300].
    #[arg(long, env = "MNEMO_CONNECTION_IDLE_SECS", value_name = "SECS")]
    pub(crate) connection_idle_secs: Option<u64>,
    /// Checkpoint the store (and start the write-ahead log over) once the
    /// log holds this many MiB (default 64); bounds replay at start-up.
    #[arg(long, env = "MNEMO_CHECKPOINT_MIB", value_name = "MIB")]
    pub(crate) checkpoint_mib: Option<u64>,
    /// Similarity of client embeddings at or above which consolidation
    /// merges memories whose texts do not conflict [default: 0.97].
    #[arg(long, env = "MNEMO_CONSOLIDATE_THRESHOLD", value_name = "SIMILARITY")]
    pub(crate) consolidate_threshold: Option<f32>,
    /// Consolidation halves the confidence of a memory for every this long
    /// it went unused (not written or recalled), e.g. `30d`, `12h`; `off`:
    /// no decay [default: 30d].
    #[arg(long, env = "MNEMO_DECAY_HALF_LIFE", value_name = "DURATION")]
    pub(crate) decay_half_life: Option<String>,
    /// The lowest confidence decay brings a memory to [default: 0.1].
    #[arg(long, env = "MNEMO_DECAY_FLOOR", value_name = "CONFIDENCE")]
    pub(crate) decay_floor: Option<f32>,
    /// Certificates directory with ca.crt, <id>.crt, <id>.key and
    /// cluster.key (`mnemo certs create`): TLS, node and client
    /// authentication, authenticated gossip.
    #[arg(long, env = "MNEMO_CERTS_DIR", value_name = "DIR")]
    pub(crate) certs_dir: Option<PathBuf>,
    /// Serve without TLS or authentication; only on loopback addresses.
    #[arg(long, env = "MNEMO_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) insecure: bool,
    /// A TOML file with any of the settings above, by their long names with
    /// `_` for `-` (flags and MNEMO_* variables win); see
    /// crates/mnemo/node.example.toml.
    #[arg(long, env = "MNEMO_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: u16,
    /// Port of the first node; the others follow.
    #[arg(long, default_value_t = 7401)]
    pub(crate) base_port: u16,
    /// Parent of the nodes' data directories.
    #[arg(long, value_name = "DIR", default_value = "mnemo-data")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AckArg {
    /// Durable on the node that took the write.
    Primary,
    /// Durable on a majority of the replica set.
    Quorum,
}

impl AckArg {
    pub(crate) fn wire(self) -> i32 {
        match self {
            AckArg::Primary => mnemo_proto::v1::Ack::Primary as i32,
            AckArg::Quorum => mnemo_proto::v1::Ack::Quorum as i32,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RememberArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to write into.
    #[arg(long)]
    pub(crate) space: String,
    /// Memory id; generated (UUIDv7) when left out.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Confidence in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) confidence: Option<f32>,
    /// How durable before acknowledging.
    #[arg(long, value_enum, default_value = "primary")]
    pub(crate) ack: AckArg,
    /// A tag; repeat for more.
    #[arg(long = "tag")]
    pub(crate) tags: Vec<String>,
    /// The memory's embedding, from a file (`-`: standard input): a JSON
    /// array of numbers, or raw little-endian f32. Left out, the node
    /// embeds the text itself.
    #[arg(long, value_name = "FILE")]
    pub(crate) embedding_file: Option<PathBuf>,
    /// The memory's text.
    pub(crate) text: String,
}

#[derive(Debug, Args)]
pub(crate) struct RecallArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to search.
    #[arg(long)]
    pub(crate) space: String,
    /// How many memories to return (1–1000).
    #[arg(short, long, default_value_t = 10)]
    pub(crate) k: u32,
    /// Leave out memories less confident than this.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) min_confidence: Option<f32>,
    /// Also list memories that share no word with the cue, after the rest.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) cue: CueArgs,
}

/// What a recall or a query looks for.
#[derive(Debug, Args)]
pub(crate) struct CueArgs {
    /// Only memories carrying this tag; repeat for more (all must match).
    #[arg(long = "tag")]
    pub(crate) tags: Vec<String>,
    /// An embedding to search by, from a file (`-`: standard input): a
    /// JSON array of numbers, or raw little-endian f32.
    #[arg(long, value_name = "FILE")]
    pub(crate) cue_embedding_file: Option<PathBuf>,
    /// The cue text (may be left out with --cue-embedding-file).
    #[arg(default_value = "")]
    pub(crate) text: String,
}

#[derive(Debug, Args)]
pub(crate) struct ForgetArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The memory's space.
    #[arg(long)]
    pub(crate) space: String,
    /// How durable before acknowledging.
    #[arg(long, value_enum, default_value = "primary")]
    pub(crate) ack: AckArg,
    /// The memory's id.
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to export.
    #[arg(long)]
    pub(crate) space: String,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to write into.
    #[arg(long)]
    pub(crate) space: String,
    /// How durable each write is before the next.
    #[arg(long, value_enum, default_value = "primary")]
    pub(crate) ack: AckArg,
    /// The file (`-`: standard input).
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The memory's space.
    #[arg(long)]
    pub(crate) space: String,
    /// The memory's id.
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct ConsolidateArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to consolidate.
    #[arg(long)]
    pub(crate) space: String,
    /// Similarity of client-supplied embeddings at or above which memories
    /// whose texts do not conflict merge (node default 0.97; equal texts
    /// always merge).
    #[arg(long)]
    pub(crate) threshold: Option<f32>,
    /// Only show the merges that would be made; change nothing.
    #[arg(long, conflicts_with = "yes")]
    pub(crate) dry_run: bool,
    /// Apply the merges without asking (needed when not at a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Spaces to search, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) spaces: Vec<String>,
    /// How many memories to return in all (1–1000).
    #[arg(short, long, default_value_t = 10)]
    pub(crate) k: u32,
    /// Leave out memories less confident than this.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) min_confidence: Option<f32>,
    #[command(flatten)]
    pub(crate) cue: CueArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LocateArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// The space to locate.
    #[arg(long)]
    pub(crate) space: String,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) common: Common,
}
