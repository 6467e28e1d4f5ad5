//! The client commands: one request to one node, printed for a person or,
//! with `--json`, as one JSON object.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::time::Duration;

use mnemo_node::json;
use mnemo_proto::v1::{self, mnemo_client::MnemoClient};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use crate::args::{
    Common, ConsolidateArgs, CueArgs, ExportArgs, ForgetArgs, GetArgs, ImportArgs, LocateArgs,
    QueryArgs, RecallArgs, RememberArgs, StatusArgs,
};

/// A failed command: the one line printed on stderr.
pub(crate) struct Failure(pub(crate) String);

type Outcome = Result<(), Failure>;

pub(crate) async fn connect(common: &Common) -> Result<MnemoClient<Channel>, Failure> {
    let tls = match (&common.certs_dir, common.insecure) {
        (Some(_), true) => {
            return Err(Failure(
                "--certs-dir and --insecure contradict each other; pass one".into(),
            ));
        }
        (Some(dir), false) => Some(
            mnemo_node::security::client_tls(dir, common.token.is_none())
                .map_err(|e| Failure(format!("--certs-dir: {e}")))?,
        ),
        (None, true) => None,
        (None, false) => {
            return Err(Failure(
                "no certificates: pass --certs-dir DIR (or set MNEMO_CERTS_DIR) with the \
                 cluster's ca.crt, or --insecure (MNEMO_INSECURE=1) for a node started with \
                 --insecure"
                    .into(),
            ));
        }
    };
    if let Some(token) = &common.token {
        if tls.is_none() {
            return Err(Failure(
                "--token travels over TLS only (--certs-dir with the cluster's ca.crt); \
                 a node started with --insecure takes no tokens"
                    .into(),
            ));
        }
        if token
            .trim()
            .parse::<tonic::metadata::AsciiMetadataValue>()
            .is_err()
        {
            return Err(Failure(
                "--token is not a token (it has characters a header cannot carry)".into(),
            ));
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = match common.node.split_once("://") {
        None => format!("{scheme}://{}", common.node),
        Some((given, _)) if given == scheme => common.node.clone(),
        Some((given, _)) => {
            return Err(Failure(format!(
                "--node {} says {given}://, but this connection is {scheme}:// ({})",
                common.node,
                if tls.is_some() {
                    "--certs-dir is set"
                } else {
                    "--insecure"
                }
            )));
        }
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| Failure(format!("--node {:?} is not an address: {e}", common.node)))?
        .connect_timeout(Duration::from_millis(common.timeout.min(3_000)));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Failure(format!("--certs-dir: {}", source_text(&e))))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Failure(format!(
            "cannot reach node {}: {}; is `mnemo node` (or `mnemo dev`) running there?",
            common.node,
            source_text(&e)
        ))
    })?;
    Ok(MnemoClient::new(channel))
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

pub(crate) fn request<T>(common: &Common, message: T) -> tonic::Request<T> {
    let mut r = authorized(common, message);
    r.set_timeout(Duration::from_millis(common.timeout));
    r
}

/// A request carrying the token, without a deadline: a stream's deadline
/// would bound every message in it, and `--timeout` is for one call.
fn authorized<T>(common: &Common, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    // `connect` made sure the token is header text.
    if let Some(token) = &common.token
        && let Ok(value) = format!("Bearer {}", token.trim()).parse()
    {
        r.metadata_mut().insert("authorization", value);
    }
    r
}

pub(crate) fn failed(common: &Common, status: &tonic::Status) -> Failure {
    let code = format!("{:?}", status.code());
    // Plaintext to a TLS port breaks HTTP/2 before any gRPC answer.
    let hint = if common.insecure && status.message().contains("h2 protocol error") {
        "; the node may be secure: pass --certs-dir (or MNEMO_CERTS_DIR) instead of --insecure"
    } else {
        ""
    };
    Failure(format!(
        "{} (node {}, {code}){hint}",
        status.message(),
        common.node
    ))
}

pub(crate) fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(v).expect("JSON of an answer"));
}

/// The file at `path` to read from, or standard input for `-`.
fn input(path: &std::path::Path) -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    Ok(Box::new(std::io::BufReader::new(std::fs::File::open(
        path,
    )?)))
}

/// An embedding read from `path` (`-`: standard input): a JSON array of
/// numbers, or raw little-endian f32. None given: empty.
fn embedding_from(flag: &str, path: Option<&std::path::Path>) -> Result<Vec<f32>, Failure> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let mut bytes = Vec::new();
    input(path)
        .and_then(|mut r| r.read_to_end(&mut bytes))
        .map_err(|e| Failure(format!("{flag} {}: {e}", path.display())))?;
    let text = bytes.trim_ascii_start();
    if text.first() == Some(&b'[') {
        return serde_json::from_slice::<Vec<f32>>(text).map_err(|e| {
            Failure(format!(
                "{flag} {}: not a JSON array of numbers: {e}",
                path.display()
            ))
        });
    }
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return Err(Failure(format!(
            "{flag} {}: {} bytes is neither a JSON array nor raw little-endian f32 \
             (a multiple of 4 bytes)",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

impl CueArgs {
    /// The cue's embedding (empty when none was given).
    fn embedding(&self) -> Result<Vec<f32>, Failure> {
        embedding_from("--cue-embedding-file", self.cue_embedding_file.as_deref())
    }
}

pub(crate) async fn remember(a: RememberArgs) -> Outcome {
    if a.id.as_deref() == Some("") {
        // Most likely an empty shell variable: a generated id would make a
        // retried write a second memory.
        return Err(Failure(
            "invalid --id: is empty; leave --id out to have one generated".into(),
        ));
    }
    let mut client = connect(&a.common).await?;
    let r = client
        .remember(request(
            &a.common,
            v1::RememberRequest {
                space: a.space,
                id: a.id.unwrap_or_default(),
                content: a.text,
                embedding: embedding_from("--embedding-file", a.embedding_file.as_deref())?,
                confidence: a.confidence,
                tags: a.tags,
                ack: a.ack.wire(),
            },
        ))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json::Remembered::from(&r));
    } else {
        let how = if r.created {
            "remembered"
        } else {
            "already remembered"
        };
        println!("{how} {} in {} (served by {})", r.id, r.space, r.served_by);
    }
    Ok(())
}

/// One line of text, shortened to `width` characters.
fn clip(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= width {
        return flat;
    }
    let mut out: String = flat.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn served_note(served_by: &str, fallback: bool, degraded: bool) -> String {
    let mut note = format!("served by {served_by}");
    if fallback {
        note.push_str(" (fallback: the primary did not answer)");
    }
    if degraded {
        note.push_str(" (degraded: partitioned, local data only)");
    }
    note
}

/// Exit code of `recall`, `query` and `forget` when the space (every space,
/// for a query) holds no memories: it does not exist, or all were
/// forgotten.
pub(crate) const NO_MEMORIES: u8 = 3;

fn empty_space(space: &str) -> String {
    format!("space {space:?} has no memories (it does not exist, or all were forgotten)")
}

pub(crate) async fn recall(a: RecallArgs) -> Result<u8, Failure> {
    let mut client = connect(&a.common).await?;
    let r = client
        .recall(request(
            &a.common,
            v1::RecallRequest {
                space: a.space,
                cue_embedding: a.cue.embedding()?,
                cue: a.cue.text,
                k: Some(a.k),
                min_confidence: a.min_confidence,
                include_unmatched: a.all,
                tags: a.cue.tags,
            },
        ))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    // A node too old to count answers 0: trust the memories it returned.
    let code = if r.space_memories == 0 && r.memories.is_empty() {
        eprintln!("{}", empty_space(&r.space));
        NO_MEMORIES
    } else {
        0
    };
    if a.common.json {
        print_json(&json::Recalled::from(&r));
        return Ok(code);
    }
    if r.memories.is_empty() {
        println!("no memories in {} match", r.space);
    } else {
        println!("{:>6}  {:>5}  {:<36}  CONTENT", "SCORE", "CONF", "ID");
        for s in &r.memories {
            let m = s.memory.clone().unwrap_or_default();
            println!(
                "{:>6.3}  {:>5.2}  {:<36}  {}",
                s.score,
                m.confidence,
                clip(&m.id, 36),
                clip(&m.content, 60)
            );
        }
    }
    println!("{}", served_note(&r.served_by, r.fallback, r.degraded));
    Ok(code)
}

pub(crate) async fn forget(a: ForgetArgs) -> Result<u8, Failure> {
    let mut client = connect(&a.common).await?;
    let r = client
        .forget(request(
            &a.common,
            v1::ForgetRequest {
                space: a.space,
                id: a.id,
                ack: a.ack.wire(),
            },
        ))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json::Forgot::from(&r));
    } else if r.existed {
        println!("forgot {} in {} (served by {})", r.id, r.space, r.served_by);
    } else {
        println!(
            "{} was not in {}; it stays forgotten (served by {})",
            r.id, r.space, r.served_by
        );
    }
    if r.space_existed {
        Ok(0)
    } else {
        eprintln!("{}", empty_space(&r.space));
        Ok(NO_MEMORIES)
    }
}

pub(crate) async fn get(a: GetArgs) -> Outcome {
    let mut client = connect(&a.common).await?;
    let r = client
        .get(request(
            &a.common,
            v1::GetRequest {
                space: a.space,
                id: a.id.clone(),
            },
        ))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json::Got::from(&r));
        return Ok(());
    }
    let show = |m: &v1::Memory| {
        println!("id          {}", m.id);
        println!("content     {}", m.content);
        let written = m.written_confidence.unwrap_or(m.confidence);
        if (m.confidence - written).abs() < 0.005 {
            println!("confidence  {:.2}", m.confidence);
        } else {
            println!(
                "confidence  {:.2} (written {written:.2}, decayed while not recalled)",
                m.confidence
            );
        }
        println!("created     {} ms", m.created_at_ms);
        if m.recalled_at_ms != 0 {
            println!("recalled    {} ms", m.recalled_at_ms);
        }
        if !m.tags.is_empty() {
            println!("tags        {}", m.tags.join(", "));
        }
        for i in &m.merged_from {
            println!("merged from {} ({:.2}): {}", i.id, i.confidence, i.content);
        }
    };
    if let Some(m) = &r.memory {
        show(m);
    } else if let Some(m) = &r.merged_into {
        println!("{} was merged into {} by consolidation:", a.id, m.id);
        show(m);
    }
    println!("served by {}", r.served_by);
    Ok(())
}

/// Every memory of a space, a page at a time, as JSON lines on stdout.
pub(crate) async fn export(a: ExportArgs) -> Outcome {
    use std::io::Write as _;
    let mut client = connect(&a.common).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut cursor, mut count) = (String::new(), 0u64);
    loop {
        let page = client
            .list(request(
                &a.common,
                v1::ListRequest {
                    space: a.space.clone(),
                    cursor: cursor.clone(),
                    limit: Some(1000),
                },
            ))
            .await
            .map_err(|s| failed(&a.common, &s))?
            .into_inner();
        for m in &page.memories {
            let line = serde_json::to_string(&json::Exported::from(m)).expect("JSON of a memory");
            writeln!(out, "{line}").map_err(|e| Failure(format!("cannot write: {e}")))?;
            count += 1;
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    out.flush()
        .map_err(|e| Failure(format!("cannot write: {e}")))?;
    eprintln!("exported {count} memories of {}", a.space);
    Ok(())
}

/// `mnemo import`: remembers each line of a JSON-lines file (as `export`
/// writes it), sent over one
/// `RememberStream` (up to as many in flight as the node takes at once),
/// so a large file does not pay a round trip per memory. Stops at the
/// first line that fails; lines already sent after it may have been
/// written, which a second run (imports are idempotent by id) makes whole.
pub(crate) async fn import(a: ImportArgs) -> Outcome {
    let file = a.file.display().to_string();
    let reader = input(&a.file).map_err(|e| Failure(format!("{file}: {e}")))?;
    let mut client = connect(&a.common).await?;
    // The line number of every request sent, in the order sent: the
    // answers come back in that order.
    let (sent_tx, mut sent) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let (requests_tx, requests) = tokio::sync::mpsc::channel(64);
    let (space, ack, name) = (a.space.clone(), a.ack.wire(), file.clone());
    // A thread of its own, not the runtime's blocking pool: after a
    // failure the command exits at once, without waiting for standard
    // input to give the reader another line.
    let (read_tx, read) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = read_tx.send(read_lines(
            reader,
            &name,
            &sent_tx,
            &requests_tx,
            &space,
            ack,
        ));
    });
    let at =
        |line: Option<usize>| line.map_or_else(|| file.clone(), |l| format!("{file} line {l}"));
    // --timeout is how long the node may go without answering.
    let patience = Duration::from_millis(a.common.timeout);
    let silent = || {
        Failure(format!(
            "no answer from node {} within --timeout ({} ms)",
            a.common.node, a.common.timeout
        ))
    };
    let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
    let opened = client.remember_stream(authorized(&a.common, stream));
    let mut answers = tokio::time::timeout(patience, opened)
        .await
        .map_err(|_| silent())?
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    let (mut created, mut present) = (0u64, 0u64);
    loop {
        let answer = match tokio::time::timeout(patience, answers.message()).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                let Failure(why) = failed(&a.common, &status);
                return Err(Failure(format!("{}: {why}", at(sent.try_recv().ok()))));
            }
            Err(_) => {
                let Failure(why) = silent();
                return Err(Failure(format!("{}: {why}", at(sent.try_recv().ok()))));
            }
        };
        let line = sent.try_recv().ok();
        match answer.outcome {
            Some(v1::remember_stream_response::Outcome::Remembered(r)) if r.created => created += 1,
            Some(v1::remember_stream_response::Outcome::Remembered(_)) => present += 1,
            Some(v1::remember_stream_response::Outcome::Error(e)) => {
                let status = tonic::Status::new(tonic::Code::from(e.code), e.message);
                let Failure(why) = failed(&a.common, &status);
                return Err(Failure(format!("{}: {why}", at(line))));
            }
            None => return Err(Failure(format!("{}: an empty answer", at(line)))),
        }
    }
    read.await
        .map_err(|_| Failure(format!("{file}: reading stopped")))??;
    if let Ok(line) = sent.try_recv() {
        return Err(Failure(format!(
            "{}: the node ended the stream without answering it",
            at(Some(line))
        )));
    }
    if a.common.json {
        print_json(&json!({"space": a.space, "imported": created, "already_there": present}));
    } else {
        println!(
            "imported {created} memories into {} ({present} were already there)",
            a.space
        );
    }
    Ok(())
}

/// Parses `reader`'s JSON lines into remembers of `space` and sends them,
/// each line's number first on `sent`, until the input or the stream ends.
fn read_lines(
    reader: Box<dyn std::io::BufRead + Send>,
    name: &str,
    sent: &tokio::sync::mpsc::UnboundedSender<usize>,
    requests: &tokio::sync::mpsc::Sender<v1::RememberRequest>,
    space: &str,
    ack: i32,
) -> Result<(), Failure> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
        content: String,
        confidence: Option<f32>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        embedding: Vec<f32>,
    }
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Failure(format!("{name}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let m: Line = serde_json::from_str(&line)
            .map_err(|e| Failure(format!("{name} line {}: {e}", n + 1)))?;
        let request = v1::RememberRequest {
            space: space.to_owned(),
            id: m.id,
            content: m.content,
            embedding: m.embedding,
            confidence: m.confidence,
            tags: m.tags,
            ack,
        };
        let _ = sent.send(n + 1);
        if requests.blocking_send(request).is_err() {
            break; // the stream ended: its answer says why
        }
    }
    Ok(())
}

/// Consolidation shows its plan first: `--dry-run` stops there, `--yes`
/// applies it straight away, and otherwise a person at a terminal is asked
/// (a script must say `--yes`).
pub(crate) async fn consolidate(a: ConsolidateArgs) -> Outcome {
    let mut client = connect(&a.common).await?;
    let ask = |dry_run: bool| {
        request(
            &a.common,
            v1::ConsolidateRequest {
                space: a.space.clone(),
                threshold: a.threshold,
                dry_run,
            },
        )
    };
    if !a.yes {
        let plan = client
            .consolidate(ask(true))
            .await
            .map_err(|s| failed(&a.common, &s))?
            .into_inner();
        if a.dry_run || plan.merged.is_empty() && plan.decayed.is_empty() {
            print_consolidation(&a.common, &plan);
            return Ok(());
        }
        let changes = format!(
            "{} merges and {} decays",
            plan.merged.len(),
            plan.decayed.len()
        );
        if !std::io::stdin().is_terminal() {
            print_consolidation(&a.common, &plan);
            return Err(Failure(format!(
                "consolidate would make {changes} in space {:?}; pass --yes to apply them \
                 (or --dry-run to only look)",
                plan.space
            )));
        }
        print_consolidation(&a.common, &plan);
        eprint!("apply these {changes}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing changed");
            return Ok(());
        }
    }
    let done = client
        .consolidate(ask(false))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    print_consolidation(&a.common, &done);
    Ok(())
}

fn print_consolidation(common: &Common, r: &v1::ConsolidateResponse) {
    /// Decays listed one by one; the rest are counted.
    const SHOWN: usize = 10;
    if common.json {
        print_json(&json::Consolidated::from(r));
        return;
    }
    let verb = if r.dry_run { "would merge" } else { "merged" };
    for m in &r.merged {
        println!(
            "{verb} {} -> {} (confidence {:.2}): {}",
            m.inputs.join(", "),
            m.id,
            m.confidence,
            m.content
        );
    }
    let verb = if r.dry_run { "would decay" } else { "decayed" };
    for d in r.decayed.iter().take(SHOWN) {
        println!(
            "{verb} {} to confidence {:.2} (not recalled lately)",
            d.id, d.confidence
        );
    }
    if r.decayed.len() > SHOWN {
        println!(
            "{verb} {} more (--json lists them all)",
            r.decayed.len() - SHOWN
        );
    }
    if r.dry_run {
        println!(
            "{}: {} memories, {} after these merges, {} decayed (a plan: nothing changed; \
             served by {})",
            r.space,
            r.memories_before,
            r.memories_after,
            r.decayed.len(),
            r.served_by
        );
    } else {
        println!(
            "{}: {} memories before, {} after, {} decayed (served by {})",
            r.space,
            r.memories_before,
            r.memories_after,
            r.decayed.len(),
            r.served_by
        );
    }
}

pub(crate) async fn query(a: QueryArgs) -> Result<u8, Failure> {
    let mut client = connect(&a.common).await?;
    let asked: std::collections::BTreeSet<String> = a.spaces.iter().cloned().collect();
    let r = client
        .query(request(
            &a.common,
            v1::QueryRequest {
                spaces: a.spaces,
                cue_embedding: a.cue.embedding()?,
                cue: a.cue.text,
                k: Some(a.k),
                min_confidence: a.min_confidence,
                include_unmatched: false,
                tags: a.cue.tags,
            },
        ))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    // Every space empty: nothing to find anywhere, said as for a recall.
    let empty: std::collections::BTreeSet<&String> = r.empty_spaces.iter().collect();
    let code = if empty.len() == asked.len() {
        NO_MEMORIES
    } else {
        0
    };
    for space in &r.empty_spaces {
        eprintln!("{}", empty_space(space));
    }
    if a.common.json {
        print_json(&json::Queried::from(&r));
        return Ok(code);
    }
    println!(
        "{:>6}  {:>5}  {:<16}  {:<36}  CONTENT",
        "SCORE", "CONF", "SPACE", "ID"
    );
    for s in &r.memories {
        let m = s.memory.clone().unwrap_or_default();
        println!(
            "{:>6.3}  {:>5.2}  {:<16}  {:<36}  {}",
            s.score,
            m.confidence,
            clip(&s.space, 16),
            clip(&m.id, 36),
            clip(&m.content, 50)
        );
    }
    for f in &r.failures {
        println!("partial: {} failed: {}", f.space, f.error);
    }
    Ok(code)
}

pub(crate) async fn locate(a: LocateArgs) -> Outcome {
    let mut client = connect(&a.common).await?;
    let r = client
        .locate(request(&a.common, v1::LocateRequest { space: a.space }))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json::Located::from(&r));
        return Ok(());
    }
    let primary = r.primary.unwrap_or_default();
    println!("space    {}", r.space);
    println!("primary  {} ({})", primary.id, primary.addr);
    for n in &r.replicas {
        println!("replica  {} ({})", n.id, n.addr);
    }
    Ok(())
}

pub(crate) async fn status(a: StatusArgs) -> Outcome {
    let mut client = connect(&a.common).await?;
    let r = client
        .status(request(&a.common, v1::StatusRequest {}))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json::status(&r));
        return Ok(());
    }
    println!(
        "node {} at {} — {} (epoch {}, expected cluster size {})",
        r.node_id, r.addr, r.partition, r.epoch, r.expected_cluster_size
    );
    println!("\nMEMBER        STATE     ADDRESS");
    for m in &r.members {
        println!("{:<12}  {:<8}  {}", m.id, m.state, m.addr);
    }
    if !r.breakers.is_empty() {
        println!("\nBREAKER       STATE      FAILURES  CHANNELS  READ MS  WRITE MS");
        for b in &r.breakers {
            let channels = r
                .pool
                .iter()
                .find(|p| p.node == b.node)
                .map_or(0, |p| p.channels);
            println!(
                "{:<12}  {:<9}  {:>8}  {:>8}  {:>7.2}  {:>8.2}{}",
                b.node,
                b.state,
                b.consecutive_failures,
                channels,
                b.read_latency_ms,
                b.write_latency_ms,
                if b.slow { "  slow" } else { "" }
            );
        }
    }
    if !r.spaces.is_empty() {
        println!("\nSPACE             MEMORIES  FORGOTTEN  DIM  DIGEST            STATE");
        for s in &r.spaces {
            println!(
                "{:<16}  {:>8}  {:>9}  {:>3}  {:<16}  {}",
                clip(&s.name, 16),
                s.memories,
                s.tombstones,
                s.dimension,
                clip(&s.digest, 16),
                if s.catching_up {
                    "catching up"
                } else {
                    "ready"
                }
            );
        }
    }
    if !r.replication.is_empty() {
        println!("\nREPLICATION   PENDING  REFUSED  TO REPAIR");
        for p in &r.replication {
            println!(
                "{:<12}  {:>7}  {:>7}  {:>9}",
                p.node, p.pending, p.refused, p.to_repair
            );
        }
    }
    if !r.handoffs.is_empty() {
        println!("\nHANDOFF       SPACE             PEER");
        for h in &r.handoffs {
            println!("{:<12}  {:<16}  {}", h.kind, clip(&h.space, 16), h.peer);
        }
    }
    if !r.settled {
        println!(
            "\n(catching up with the cluster: spaces not yet caught up are served by other holders)"
        );
    }
    Ok(())
}

pub(crate) async fn decommission(a: StatusArgs) -> Outcome {
    let mut client = connect(&a.common).await?;
    let r = client
        .decommission(request(&a.common, v1::DecommissionRequest {}))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    if a.common.json {
        print_json(&json!({"node_id": r.node_id, "spaces": r.spaces}));
    } else {
        println!(
            "node {} handed {} spaces to their other holders and is leaving the cluster",
            r.node_id, r.spaces
        );
    }
    Ok(())
}
