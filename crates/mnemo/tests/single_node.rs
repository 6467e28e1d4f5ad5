//! One real node process: durability across SIGKILL, tombstones across
//! restarts, and bad input refused without harm.

mod support;

use std::collections::HashSet;

use mnemo_proto::v1;
use support::NodeProcess;
use tonic::Code;

fn remember(space: &str, id: &str, content: &str) -> v1::RememberRequest {
    v1::RememberRequest {
        space: space.into(),
        id: id.into(),
        content: content.into(),
        ..Default::default()
    }
}

/// A client of `node` connecting from 127.0.0.2: over loopback, but not
/// from a member's address (the node's own, 127.0.0.1, is one).
fn stranger(node: &NodeProcess) -> v1::mnemo_client::MnemoClient<tonic::transport::Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .local_address(Some("127.0.0.2".parse().unwrap()));
    v1::mnemo_client::MnemoClient::new(endpoint.connect_lazy())
}

fn recall_all(space: &str, cue: &str) -> v1::RecallRequest {
    v1::RecallRequest {
        space: space.into(),
        cue: cue.into(),
        k: Some(1000),
        include_unmatched: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let client = node.client().await;

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let mut client = client.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let id = format!("w{w}-{i}");
                let r = client
                    .remember(remember(
                        "journal",
                        &id,
                        &format!("entry {i} from writer {w}"),
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.id, id);
                acked.push(id);
            }
            acked
        });
    }
    let acked: HashSet<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(acked.len(), 320);

    node.kill9();
    let node = NodeProcess::start("n1", dir.path(), &node.addr.to_string(), &[]);
    let found = node
        .client()
        .await
        .recall(recall_all("journal", "entry writer"))
        .await
        .unwrap()
        .into_inner();
    let ids: HashSet<String> = found
        .memories
        .into_iter()
        .map(|m| m.memory.unwrap().id)
        .collect();
    assert_eq!(
        ids, acked,
        "every acknowledged write is there after SIGKILL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_stays_forgotten_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let mut c = node.client().await;
    c.remember(remember("s", "keep", "keep this one"))
        .await
        .unwrap();
    c.remember(remember("s", "drop", "drop this one"))
        .await
        .unwrap();
    let f = c
        .forget(v1::ForgetRequest {
            space: "s".into(),
            id: "drop".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(f.existed);
    node.kill9();

    let node = NodeProcess::start("n1", dir.path(), &node.addr.to_string(), &[]);
    let mut c = node.client().await;
    let ids: Vec<String> = c
        .recall(recall_all("s", "this one"))
        .await
        .unwrap()
        .into_inner()
        .memories
        .into_iter()
        .map(|m| m.memory.unwrap().id)
        .collect();
    assert_eq!(ids, ["keep"]);
    let again = c
        .remember(remember("s", "drop", "drop this one"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let mut c = node.client().await;
    c.remember(remember("s", "base", "a memory that must not change"))
        .await
        .unwrap();

    let long = "x".repeat(129);
    let huge = "y".repeat(64 * 1024 + 1);
    let mut cases: Vec<(&str, v1::RememberRequest)> = vec![
        ("space", remember("", "a", "text")),
        ("space", remember(&long, "a", "text")),
        ("space", remember("no spaces", "a", "text")),
        ("space", remember("ünïcode", "a", "text")),
        ("id", remember("s", &long, "text")),
        ("id", remember("s", "a/b", "text")),
        ("content", remember("s", "a", &huge)),
        ("content", remember("s", "a", "")),
    ];
    for (field, confidence) in [
        ("confidence", f32::NAN),
        ("confidence", 1.5),
        ("confidence", -0.1),
    ] {
        let mut r = remember("s", "a", "text");
        r.confidence = Some(confidence);
        cases.push((field, r));
    }
    let mut nan = remember("s", "a", "text");
    nan.embedding = vec![0.5; 256];
    nan.embedding[7] = f32::NAN;
    cases.push(("embedding", nan));
    let mut wrong_dim = remember("s", "a", "text");
    wrong_dim.embedding = vec![0.5; 17];
    cases.push(("embedding", wrong_dim));

    for (field, request) in cases {
        let status = c.remember(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "message names {field}: {}",
            status.message()
        );
    }

    for (k, ok) in [(0, false), (1001, false), (1000, true)] {
        let mut r = recall_all("s", "memory");
        r.k = Some(k);
        let result = c.recall(r).await;
        assert_eq!(result.is_ok(), ok, "k = {k}: {result:?}");
        if let Err(status) = result {
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains("invalid k"));
        }
    }
    let mut r = recall_all("s", "memory");
    r.cue_embedding = vec![1.0; 3];
    let status = c.recall(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cue_embedding"), "{status:?}");

    // Larger than the node's message limit: refused by the transport with
    // gRPC's code for it.
    let mut oversized = remember("s", "big", "text");
    oversized.tags = vec!["t".repeat(1024); 5 * 1024];
    let status = c.remember(oversized).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("limit"), "{status:?}");

    // Nothing changed, and the node still answers.
    let left = c
        .recall(recall_all("s", "memory"))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = left
        .memories
        .into_iter()
        .map(|m| m.memory.unwrap().id)
        .collect();
    assert_eq!(ids, ["base"]);
    let status = c.status(v1::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (status.spaces[0].memories, status.spaces[0].tombstones),
        (1, 0),
        "no refused write left a trace"
    );
}

#[test]
fn cli_reports_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    for args in [
        &["remember", "--space", "bad space", "text"][..],
        &["recall", "--space", "s", "-k", "0", "cue"],
        &["remember", "--space", "s", "--confidence", "2", "text"],
        &["remember", "--space", "s", "--id", "", "text"],
    ] {
        let out = node.cli(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("error: invalid "), "{stderr}");
    }
    let out = node.cli(&["remember", "--space", "s", "--json", "hello there"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"], "s");
    assert_eq!(v["served_by"], "n1");
    assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()));

    let out = node.cli(&["recall", "--space", "s", "--json", "hello"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["memories"][0]["content"], "hello there");
    for field in ["space", "served_by", "fallback", "degraded"] {
        assert!(!v[field].is_null(), "recall JSON has {field}");
    }
    for field in ["id", "content", "confidence", "score"] {
        assert!(
            !v["memories"][0][field].is_null(),
            "memory JSON has {field}"
        );
    }

    let unreachable = support::mnemo()
        .args(["status", "--node", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("cannot reach node 127.0.0.1:1"), "{stderr}");
}

#[test]
fn metrics_and_health_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    let http = node
        .http
        .clone()
        .expect("the node reports its http address");
    let out = node.cli(&["remember", "--space", "s", "hello metrics"]);
    assert!(out.status.success());
    let metrics = support::http_get(&http, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("mnemo_router_requests_total"), "{metrics}");
    assert!(metrics.contains("mnemo_cluster_partitioned"), "{metrics}");
    let health = support::http_get(&http, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"node_id\":\"n1\""), "{health}");
}

/// Consolidation from the command line: the plan first, nothing changed
/// without `--yes` when no one is at a terminal, and the merged memory
/// keeps what each input said.
#[test]
fn cli_consolidation_shows_its_plan_and_asks() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    for (id, text) in [
        ("owes-1", "Alice owes Jen 12 euros"),
        ("owes-2", "alice owes jen 12 euros."),
        ("owes-3", "Alice owes Jen 247 euros"),
        ("flight", "Alice has a flight to Oslo"),
    ] {
        let out = node.cli(&["remember", "--space", "facts", "--id", id, text]);
        assert!(out.status.success(), "{out:?}");
    }
    let count = |node: &NodeProcess| {
        let out = node.cli(&["recall", "--space", "facts", "--json", "-k", "100", "alice"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["memories"].as_array().unwrap().len()
    };

    let plan = node.cli(&["consolidate", "--space", "facts", "--dry-run", "--json"]);
    assert!(plan.status.success(), "{plan:?}");
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["merged"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["merged"][0]["inputs"],
        serde_json::json!(["owes-1", "owes-2"])
    );
    assert_eq!(count(&node), 4, "a dry run changes nothing");

    // No terminal and no --yes: the plan is shown, nothing is applied.
    let refused = node.cli(&["consolidate", "--space", "facts"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(count(&node), 4);

    let done = node.cli(&["consolidate", "--space", "facts", "--yes", "--json"]);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(count(&node), 3, "only the true duplicate merged");
    let out = node.cli(&["recall", "--space", "facts", "--json", "-k", "100", "owes"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let merged = v["memories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["merged_from"].is_array())
        .expect("the merged memory");
    let kept: Vec<&str> = merged["merged_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ["Alice owes Jen 12 euros", "alice owes jen 12 euros."]
    );
}

/// Decay from the command line: a memory nobody recalled for 60 days is
/// in the plan, is decayed only with `--yes`, and `get` shows both its
/// current and its written confidence.
#[test]
fn cli_consolidation_decays_idle_memories_and_asks_first() {
    use mnemo_proto::v1::internal_client::InternalClient;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    // Written 60 days ago, as a peer hands a memory over.
    let content = "Alice parked on level 3";
    let old = v1::Memory {
        id: "old".into(),
        content: content.into(),
        embedding: mnemo_store::embed::lexical(content),
        written_confidence: Some(0.8),
        created_at_ms: mnemo_store::now_ms() - 60 * 24 * 60 * 60 * 1000,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let merged = rt.block_on(async {
        let mut internal = InternalClient::connect(format!("http://{}", node.addr))
            .await
            .unwrap();
        internal
            .merge(v1::MergeRequest {
                space: "facts".into(),
                from_node: "test".into(),
                elements: vec![v1::Element {
                    kind: Some(v1::element::Kind::Memory(old)),
                }],
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(merged.applied, 1);
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let plan = node.cli(&["consolidate", "--space", "facts", "--dry-run"]);
    assert!(plan.status.success(), "{plan:?}");
    assert!(
        text(&plan).contains("would decay old to confidence 0.20"),
        "{}",
        text(&plan)
    );
    let refused = node.cli(&["consolidate", "--space", "facts"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("0 merges and 1 decays") && stderr.contains("--yes"),
        "{stderr}"
    );
    let unchanged = node.cli(&["get", "--space", "facts", "old"]);
    assert!(
        text(&unchanged).contains("confidence  0.80\n"),
        "{}",
        text(&unchanged)
    );

    let done = node.cli(&["consolidate", "--space", "facts", "--yes"]);
    assert!(done.status.success(), "{done:?}");
    assert!(
        text(&done).contains("decayed old to confidence 0.20"),
        "{}",
        text(&done)
    );
    let got = node.cli(&["get", "--space", "facts", "old"]);
    assert!(
        text(&got).contains("confidence  0.20 (written 0.80, decayed while not recalled)"),
        "{}",
        text(&got)
    );
}

/// Embeddings a client brings, from files or standard input, as JSON or
/// raw little-endian f32.
#[test]
fn cli_takes_embeddings_from_files_and_stdin() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let json = dir.path().join("a.json");
    std::fs::write(&json, "[1.0, 0.0, 0.0]").unwrap();
    let raw = dir.path().join("b.f32");
    let bytes: Vec<u8> = [0.0f32, 1.0, 0.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    std::fs::write(&raw, &bytes).unwrap();
    for (id, file) in [("a", &json), ("b", &raw)] {
        let file = file.to_str().unwrap();
        let out = node.cli(&[
            "remember",
            "--space",
            "v",
            "--id",
            id,
            "--embedding-file",
            file,
            "text",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let cue = dir.path().join("cue.json");
    std::fs::write(&cue, "[0.9, 0.1, 0.0]").unwrap();
    let out = node.cli(&[
        "recall",
        "--space",
        "v",
        "--json",
        "--cue-embedding-file",
        cue.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["memories"][0]["id"], "a");

    let mut child = support::mnemo()
        .args([
            "recall",
            "--space",
            "v",
            "--json",
            "--cue-embedding-file",
            "-",
        ])
        .args(["--node", &node.node_flag()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["memories"][0]["id"], "b", "raw f32 from stdin");

    // Tags filter from the command line.
    let out = node.cli(&[
        "remember",
        "--space",
        "t",
        "--tag",
        "home",
        "fix the leaking tap",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = node.cli(&[
        "remember",
        "--space",
        "t",
        "--tag",
        "work",
        "fix the leaking roof",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = node.cli(&["recall", "--space", "t", "--json", "--tag", "work", "fix"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = v["memories"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{v}");
    assert_eq!(found[0]["content"], "fix the leaking roof");

    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, [1u8, 2, 3]).unwrap();
    let out = node.cli(&[
        "recall",
        "--space",
        "v",
        "--cue-embedding-file",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cue-embedding-file"), "{stderr}");
}

/// A space exported and imported elsewhere holds the same memories, and an
/// import run twice writes nothing new.
#[test]
fn export_then_import_copies_a_space() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    // More than one page of 1000.
    let mut child = support::mnemo()
        .args(["import", "--space", "src", "-", "--node", &node.node_flag()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..1200 {
            writeln!(
                stdin,
                r#"{{"id": "m{i:04}", "content": "note number {i}", "confidence": 0.5, "tags": ["t{}"]}}"#,
                i % 3
            )
            .unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1200 memories"));

    let exported = node.cli(&["export", "--space", "src"]);
    assert!(exported.status.success(), "{exported:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1200);
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str()),
        "id order"
    );
    let file = dir.path().join("src.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let file = file.to_str().unwrap();
    for expected in [
        "imported 1200 memories into dst (0 were",
        "imported 0 memories into dst (1200 were",
    ] {
        let out = node.cli(&["import", "--space", "dst", file]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expected),
            "{out:?}"
        );
    }
    let out = node.cli(&["import", "--space", "dst", "--json", file]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["imported"].as_u64(), v["already_there"].as_u64()),
        (Some(0), Some(1200)),
        "--json prints one object"
    );
    // The same memories (an import stamps its own creation time).
    let without_time = |out: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("created_at_ms");
                v
            })
            .collect()
    };
    let copied = node.cli(&["export", "--space", "dst"]);
    let (a, b) = (without_time(&exported.stdout), without_time(&copied.stdout));
    assert!(a == b, "the copy differs from the original");
}

/// A mistyped flag gets a suggestion; shells get completion scripts.
#[test]
fn cli_suggests_flags_and_completes() {
    let out = support::mnemo()
        .args(["recall", "--spce", "s", "cue"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("similar argument exists: '--space'"),
        "{stderr}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = support::mnemo()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        // fish names long options `-l space`.
        let space = script.contains("--space") || script.contains("-l space");
        assert!(script.contains("consolidate") && space, "{shell}");
    }
}

/// A space with no memories is reported as such, with its own exit code
/// (3), by recall, query and forget; a space that has memories is not.
#[test]
fn empty_spaces_are_reported_with_their_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let out = node.cli(&["remember", "--space", "full", "a memory about cats"]);
    assert!(out.status.success());

    let out = node.cli(&["recall", "--space", "nothing", "cats"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("space \"nothing\" has no memories"));
    let out = node.cli(&["recall", "--space", "full", "--json", "dogs"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a space whose memories do not match"
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["space_memories"], 1);

    let out = node.cli(&["query", "--spaces", "nothing,none", "cats"]);
    assert_eq!(out.status.code(), Some(3));
    let out = node.cli(&["query", "--spaces", "nothing,full", "cats"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nothing\""));

    let out = node.cli(&["forget", "--space", "nowhere", "some-id"]);
    assert_eq!(out.status.code(), Some(3));
    let out = node.cli(&["forget", "--space", "full", "some-id"]);
    assert_eq!(out.status.code(), Some(0));
}

/// Output piped into a reader that stops early (`| head -1`) ends the
/// command quietly, as for any Unix tool.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::io::{BufRead as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    // More than a pipe holds (64 KiB), so the export is still writing when
    // the reader goes.
    let lines = dir.path().join("big.jsonl");
    let mut file = std::fs::File::create(&lines).unwrap();
    for i in 0..400 {
        let content = format!("memory {i} {}", "words ".repeat(60));
        writeln!(
            file,
            "{}",
            serde_json::json!({"id": format!("m{i:03}"), "content": content})
        )
        .unwrap();
    }
    let out = node.cli(&["import", "--space", "big", lines.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = node
        .command()
        .args(["export", "--space", "big", "--node", &node.node_flag()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("m000"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

/// A `RememberStream` message over the size limit ends the stream with
/// `RESOURCE_EXHAUSTED`, after the answer to the message before it; nothing
/// of it is stored and the node keeps serving. The message that was
/// written is timed as a remember.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stream_message_ends_the_stream_after_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    let mut oversized = remember("s", "big", "text");
    oversized.tags = vec!["t".repeat(1024); 5 * 1024];
    let before = remember("s", "before-big", "sent before the big one");
    let mut answers = node
        .client()
        .await
        .remember_stream(tokio_stream::iter(vec![before, oversized]))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().expect("the first answer");
    assert!(
        matches!(
            first.outcome,
            Some(v1::remember_stream_response::Outcome::Remembered(_))
        ),
        "{first:?}"
    );
    let status = answers
        .message()
        .await
        .expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let mut c = node.client().await;
    let get = |id: &str| v1::GetRequest {
        space: "s".into(),
        id: id.into(),
    };
    let missing = c.get(get("big")).await.expect_err("not stored");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    c.get(get("before-big"))
        .await
        .expect("the node still serves, and kept what came before");
    let page = support::http_get(node.http.as_deref().unwrap(), "/metrics");
    let timed = support::requests_counted(&page, "remember", "edge", "ok");
    assert!(
        (timed - 1.0).abs() < 0.5,
        "one remember timed, not {timed}: {page}"
    );
}

/// `import` stops at the first line the node refuses or that is not JSON,
/// and names the line and the field; what came before it is there. It ends
/// on its own while its input is still open, and when the node goes silent.
#[test]
fn import_stops_at_the_first_bad_line_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let file = dir.path().join("in.jsonl");
    let file_arg = file.to_str().unwrap();
    let good = |i: usize| format!(r#"{{"id": "m{i}", "content": "note {i}"}}"#);
    // From standard input, which stays open: the import still ends at the
    // refused line, without waiting for more input.
    let mut child = support::mnemo()
        .args(["import", "--space", "s", "-", "--node", &node.node_flag()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write as _;
        let bad = r#"{"id": "m3", "content": " "}"#;
        writeln!(stdin, "{}\n{}\n{bad}\n{}", good(1), good(2), good(4)).unwrap();
    }
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(child.wait_with_output()));
    // A guard against a hang, not a measurement: the import must end on
    // its own while its input is still open.
    let out = done
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("import ended without its input closing")
        .unwrap();
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("line 3") && err.contains("content"), "{err}");

    // A node that stops answering: --timeout ends the import.
    std::fs::write(&file, format!("{}\n{}", good(7), good(8))).unwrap();
    node.signal("STOP");
    let out = node.cli(&["import", "--space", "u", "--timeout", "500", file_arg]);
    node.signal("CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("no answer") && err.contains("--timeout"),
        "{err}"
    );

    std::fs::write(&file, format!("{}\nnot json\n{}", good(5), good(6))).unwrap();
    let out = node.cli(&["import", "--space", "t", file_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(err.contains("line 2"), "{err}");

    let exported = node.cli(&["export", "--space", "s"]);
    let ids: Vec<serde_json::Value> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone())
        .collect();
    assert!(
        ids.contains(&"m1".into()) && ids.contains(&"m2".into()),
        "what came before the bad line is there: {ids:?}"
    );
}

/// A recall over a space too large to scan in line (over 20 000 memories)
/// on a node serving on its own threads: such a thread's runtime has no
/// other worker to hand its connections to, so the scan goes to its
/// blocking pool (`block_in_place`, as on the shared runtime, would fail
/// there). It ranks what a scan in line would, and the connection is
/// served afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recall_on_a_serving_thread_is_ranked_off_the_thread() {
    large_recall(&["--serving-threads", "1"]).await;
}

/// The same on the shared multi-threaded runtime, where the scan stays on
/// its worker (`block_in_place`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recall_on_the_shared_runtime_is_ranked_in_place() {
    large_recall(&["--serving-threads", "0"]).await;
}

/// Fills a space past the in-line scan limit on a node started with
/// `flags`, then recalls from it and reads from it on one connection.
async fn large_recall(flags: &[&str]) {
    const MEMORIES: usize = 20_001;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", flags);
    let lines = (0..MEMORIES).map(|i| {
        let content = if i == 7_777 {
            "the lighthouse keeper logs the storm".to_owned()
        } else {
            format!("routine entry {i}")
        };
        support::remember("big", &format!("m-{i}"), &content, v1::Ack::Primary)
    });
    let mut answers = node
        .client()
        .await
        .remember_stream(tokio_stream::iter(lines.collect::<Vec<_>>()))
        .await
        .unwrap()
        .into_inner();
    let mut remembered = 0;
    while let Some(answer) = answers.message().await.unwrap() {
        assert!(
            matches!(
                answer.outcome,
                Some(v1::remember_stream_response::Outcome::Remembered(_))
            ),
            "{answer:?}"
        );
        remembered += 1;
    }
    assert_eq!(remembered, MEMORIES);
    let mut c = node.client().await;
    let r = c
        .recall(v1::RecallRequest {
            space: "big".into(),
            cue: "lighthouse storm".into(),
            k: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.space_memories, MEMORIES as u64, "{r:?}");
    let ids: Vec<&str> = r
        .memories
        .iter()
        .map(|m| m.memory.as_ref().expect("a memory").id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["m-7777"],
        "only one memory shares a word with the cue"
    );
    // The thread still serves: the next call on the connection.
    let got = c
        .get(v1::GetRequest {
            space: "big".into(),
            id: "m-7777".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.memory.map(|m| m.content).as_deref(),
        Some("the lighthouse keeper logs the storm")
    );
}

/// Accepted connections carry TCP keepalive, so that a client whose host
/// vanished without closing is found out by the kernel (the node's side of
/// the connection has its keepalive timer armed, in `/proc/net/tcp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_carry_tcp_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
    let client = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let (ours, theirs) = (client.local_addr().unwrap(), node.addr);
    // `/proc/net/tcp` writes an IPv4 endpoint as the address's bytes in
    // the host's order, then the port, in hex.
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => unreachable!("the node listens on 127.0.0.1"),
    };
    let (local, remote) = (hex(theirs), hex(ours));
    // The node's end: local is the node's port, remote is ours. Its timer
    // field (`tr`) is 2 while the keepalive timer runs.
    support::observe(
        "the node's end of the connection to have keepalive armed",
        || {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
            let row = table
                .lines()
                .find(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str())
                })
                .map(str::to_owned);
            let timer = row
                .as_deref()
                .and_then(|l| l.split_whitespace().nth(5)?.split(':').next());
            let armed = timer == Some("02");
            async move {
                if armed {
                    Ok(())
                } else {
                    Err(format!("{row:?}"))
                }
            }
        },
    )
    .await;
    drop(client);
}

/// A node holds at most `--max-connections` gRPC connections: one more is
/// closed at once, without harm to those open, and its place comes back
/// when one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_places_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--max-connections", "3"]);
    let write = |i: usize| remember("limit", &format!("m-{i}"), "a line");
    let mut open = Vec::new();
    for i in 0..3 {
        let mut c = node.client().await;
        c.remember(write(i))
            .await
            .expect("a connection within the limit");
        open.push(c);
    }
    // The fourth is accepted and closed: its call fails on the transport,
    // as on a connection that broke (its code depends on how far the
    // client got: reset, broken pipe, closed), and nothing is written.
    let mut over = node.client().await;
    let e = over.remember(write(3)).await.expect_err("over the limit");
    let source = std::error::Error::source(&e);
    let broken = source.is_some_and(<dyn std::error::Error>::is::<tonic::transport::Error>);
    assert!(broken, "{e:?}");
    // Those open still serve.
    for (i, c) in open.iter_mut().enumerate() {
        c.remember(write(10 + i)).await.expect("an open connection");
    }
    // One closes; its place is given back once the node has seen it go,
    // which a new connection's call shows.
    open.pop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut again = loop {
        let mut c = node.client().await;
        if c.remember(write(20)).await.is_ok() {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no place came back after a connection closed"
        );
        // The node learns of the close from the kernel; no event of it
        // reaches this test, so it asks again at a modest pace.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    // (On the connection just opened: the node is at its limit again.)
    let ids: HashSet<String> = again
        .recall(recall_all("limit", "line"))
        .await
        .expect("recall")
        .into_inner()
        .memories
        .iter()
        .map(|m| m.memory.as_ref().unwrap().id.clone())
        .collect();
    assert!(
        !ids.contains("m-3"),
        "the refused write is not there: {ids:?}"
    );
    assert_eq!(ids.len(), 7, "{ids:?}");
}

/// A client's connection that says nothing, or stops asking, is closed and
/// gives its place back; one with a request in flight (a stream kept open)
/// is not, and a client whose idle connection was closed connects again.
/// Clients come from 127.0.0.2: the node's own address is a member's, whose
/// connections are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_give_their_places_back() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        "n1",
        dir.path(),
        "127.0.0.1:0",
        &[
            "--max-connections",
            "3",
            "--connection-idle-secs",
            "1",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let silent = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        socket.connect(node.addr).await.unwrap()
    };
    let write = |i: usize| remember("idle", &format!("m-{i}"), "a line");

    // A stream with a request in flight, and two connections that never
    // say a word, fill the places.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut streaming = stranger(&node);
    tx.send(write(0)).await.unwrap();
    let mut answers = streaming
        .remember_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("a stream")
        .into_inner();
    answers.message().await.unwrap().expect("the first answer");
    let mut quiet = [silent().await, silent().await];
    assert!(
        stranger(&node).remember(write(1)).await.is_err(),
        "all taken"
    );

    // The silent ones are closed: what the node sent (its HTTP/2 settings)
    // ends (the bound is only there so that a node that keeps them for
    // good fails the test instead of hanging it).
    for c in &mut quiet {
        let mut sent = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(30), c.read_to_end(&mut sent))
                .await;
        assert!(read.is_ok(), "the node keeps a silent connection open");
    }
    // Their places came back: a client is served (it may need a second
    // try if it raced the node's own bookkeeping of the close).
    let mut client = stranger(&node);
    let mut served = false;
    for _ in 0..100 {
        if client.remember(write(2)).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(served, "no place came back");

    // Well past the idle limit, the stream still carries requests, and the
    // client whose idle connection was closed meanwhile connects again.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    tx.send(write(3)).await.unwrap();
    let answer = answers.message().await.unwrap().expect("an answer");
    assert!(
        matches!(
            answer.outcome,
            Some(v1::remember_stream_response::Outcome::Remembered(_))
        ),
        "{answer:?}"
    );
    client.remember(write(4)).await.expect("a new connection");
    // The node counted what it closed: the two silent ones at least, and
    // the client's idle one.
    let page = support::http_get(node.http.as_deref().unwrap(), "/metrics");
    let closed = support::metric_sum(&page, "mnemo_connections_idle_closed_total{port=\"grpc\"}");
    assert!(closed >= 3.0, "{closed} closed idle");
}

/// An eighth of the places are kept for cluster members' addresses: once
/// clients from elsewhere hold the rest, one more of theirs is closed, yet
/// a connection from a member's address (the node's own, 127.0.0.1, here)
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_places_are_kept_for_members_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--max-connections", "8"]);
    let write = |i: usize| remember("kept", &format!("m-{i}"), "a line");
    let mut open = Vec::new();
    for i in 0..7 {
        let mut c = stranger(&node);
        c.remember(write(i))
            .await
            .expect("a place outside the members' share");
        open.push(c);
    }
    let e = stranger(&node)
        .remember(write(7))
        .await
        .expect_err("the rest is the members'");
    let source = std::error::Error::source(&e);
    assert!(
        source.is_some_and(<dyn std::error::Error>::is::<tonic::transport::Error>),
        "{e:?}"
    );
    let mut member = node.client().await;
    member
        .remember(write(8))
        .await
        .expect("a member's address takes a kept place");
    // With that taken too, even a member's address is refused.
    assert!(node.client().await.remember(write(9)).await.is_err());
}
