//! A secure cluster of real node processes: only nodes talk to nodes,
//! tokens keep tenants apart, strangers cannot join, and an insecure node
//! stays on loopback.

mod support;

use mnemo_node::security::{Claims, token_key};
use mnemo_proto::v1::{self, internal_client::InternalClient, mnemo_client::MnemoClient};
use std::path::Path;
use support::{
    Cluster, NodeProcess, client_as, eventually, ids, recall_all, remember, tls_channel,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// A TLS channel to `node` that presents no certificate (a token holder's).
async fn anonymous(node: &NodeProcess) -> Channel {
    tls_channel(node.addr, node.certs.as_ref().unwrap(), None).await
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn forwarded<T>(mut r: tonic::Request<T>) -> tonic::Request<T> {
    r.metadata_mut()
        .insert(mnemo_proto::FORWARDED_BY, "n1".parse().unwrap());
    r
}

fn token(certs: &Path, spaces: &[&str], read_only: bool, expires: Option<u64>) -> String {
    token_key(certs).unwrap().sign(&Claims {
        spaces: spaces.iter().map(|s| (*s).to_owned()).collect(),
        read_only,
        expires,
    })
}

/// What every node holds of `space`, through the public service.
async fn memories(cluster: &Cluster, space: &str) -> std::collections::BTreeSet<String> {
    ids(&cluster.nodes[0].recall(recall_all(space, "x")).await)
}

fn forged(space: &str) -> v1::MergeRequest {
    v1::MergeRequest {
        space: space.into(),
        from_node: "n2".into(),
        elements: vec![
            v1::Element {
                kind: Some(v1::element::Kind::Memory(v1::Memory {
                    id: "forged".into(),
                    content: "a forged memory".into(),
                    confidence: 1.0,
                    created_at_ms: 1,
                    ..Default::default()
                })),
            },
            v1::Element {
                kind: Some(v1::element::Kind::Tombstone("real".into())),
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_call_the_internal_service_or_forward() {
    let cluster = Cluster::start_secure(3, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let n1 = &cluster.nodes[0];
    let mut c = n1.client().await;
    c.remember(remember("t", "real", "the real memory", v1::Ack::Quorum))
        .await
        .unwrap();
    let before = memories(&cluster, "t").await;
    assert_eq!(before.len(), 1);

    // The operator's client certificate opens every space, but it is no
    // node: Internal and the forwarded marker are refused.
    for node in &cluster.nodes {
        let channel = client_as(node.addr, &certs, "client").await;
        let mut internal = InternalClient::new(channel_of(node, &certs, "client").await);
        let e = internal.merge(forged("t")).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("cluster nodes only"), "{e:?}");
        let e = internal.spaces(v1::SpacesRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = internal
            .reconcile(v1::ReconcileRequest {
                space: "t".into(),
                message: vec![0x61],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let hop = tokio_stream::iter(vec![hop_call(0, &recall_all("t", "x"), "")]);
        let e = internal.hop(hop).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

        let mut public = channel;
        let e = public
            .recall(forwarded(tonic::Request::new(recall_all("t", "x"))))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains(mnemo_proto::FORWARDED_BY), "{e:?}");
        let e = public
            .remember(forwarded(tonic::Request::new(remember(
                "t",
                "stray",
                "written past routing",
                v1::Ack::Primary,
            ))))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

        // No certificate at all: not even the public service.
        let mut stranger = MnemoClient::new(anonymous(node).await);
        let e = stranger.recall(recall_all("t", "x")).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let mut internal = InternalClient::new(anonymous(node).await);
        let e = internal.merge(forged("t")).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let hop = tokio_stream::iter(vec![hop_call(0, &recall_all("t", "x"), "")]);
        let e = internal.hop(hop).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

        // Plaintext to a TLS port gets no answer at all.
        let plain = MnemoClient::connect(format!("http://{}", node.addr)).await;
        if let Ok(mut plain) = plain {
            assert!(plain.recall(recall_all("t", "x")).await.is_err());
        }
    }

    // A token holder with the marker is refused too, whatever its scope.
    let all = token(&certs, &["*"], false, None);
    let mut anon = MnemoClient::new(anonymous(n1).await);
    let e = anon
        .recall(forwarded(with_token(recall_all("t", "x"), &all)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Nothing changed anywhere: every holder has exactly the real memory.
    assert_eq!(memories(&cluster, "t").await, before);
    for node in &cluster.nodes {
        let local = node.recall_local("t", "x").await;
        if let Ok(local) = local {
            assert_eq!(ids(&local), before, "{}", node.id);
        }
    }

    // A node certificate is a peer: its Internal calls are answered.
    let mut peer = InternalClient::new(channel_of(n1, &certs, "n2").await);
    let spaces = peer
        .spaces(v1::SpacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(spaces.spaces.contains(&"t".to_owned()), "{spaces:?}");
}

/// A forwarded recall as one call on a hop stream, with `token` (empty:
/// none).
fn hop_call(id: u64, recall: &v1::RecallRequest, token: &str) -> v1::HopCall {
    v1::HopCall {
        id,
        operation: "recall".into(),
        request: prost::Message::encode_to_vec(recall),
        timeout_us: 5_000_000,
        sent_us: 0,
        authorization: if token.is_empty() {
            String::new()
        } else {
            format!("Bearer {token}")
        },
        fallback: false,
    }
}

/// On a hop stream a node opened, each call is checked against the token
/// it carries, as a forwarded unary call is: out of scope, expired or
/// forged tokens are refused there, call by call, and the stream goes on;
/// a call with no token is the node's own (every space).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_stream_checks_every_call_s_token() {
    let cluster = Cluster::start_secure(1, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let node = &cluster.nodes[0];
    let mut c = node.client().await;
    for space in ["alice-notes", "bob-notes"] {
        c.remember(remember(space, "m", "a note", v1::Ack::Primary))
            .await
            .unwrap();
    }
    let other = tempfile::tempdir().unwrap();
    support::make_certs(other.path(), 1);
    let alice = token(&certs, &["alice-*"], false, None);
    let calls = vec![
        hop_call(0, &recall_all("alice-notes", "note"), &alice),
        hop_call(1, &recall_all("bob-notes", "note"), &alice),
        hop_call(
            2,
            &recall_all("alice-notes", "note"),
            &token(&certs, &["*"], false, Some(1)),
        ),
        hop_call(
            3,
            &recall_all("alice-notes", "note"),
            &token(other.path(), &["*"], false, None),
        ),
        hop_call(4, &recall_all("bob-notes", "note"), ""),
    ];
    let mut peer = InternalClient::new(channel_of(node, &certs, "n1").await);
    let mut answers: Vec<v1::HopAnswer> = peer
        .hop(tokio_stream::iter(calls))
        .await
        .unwrap()
        .into_inner()
        .map(|a| a.expect("an answer"))
        .collect()
        .await;
    answers.sort_by_key(|a| a.id);
    let codes: Vec<Code> = answers.iter().map(|a| Code::from(a.code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Ok
        ],
        "{answers:?}"
    );
    assert!(answers[1].message.contains("\"bob-notes\""), "{answers:?}");
    assert!(answers[2].message.contains("expired"), "{answers:?}");
    let recalled: v1::RecallResponse =
        prost::Message::decode(answers[0].answer.as_slice()).unwrap();
    assert_eq!(ids(&recalled), ["m".to_owned()].into(), "{recalled:?}");
}

/// A channel to `node` presenting `certs/<name>.crt`.
async fn channel_of(node: &NodeProcess, certs: &Path, name: &str) -> Channel {
    tls_channel(node.addr, certs, Some(name)).await
}

/// The tokens of [`tokens_keep_tenants_apart`].
struct Tokens {
    alice: String,
    reader: String,
    expired: String,
    foreign: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_tenants_apart() {
    let cluster = Cluster::start_secure(3, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let other = tempfile::tempdir().unwrap();
    support::make_certs(other.path(), 1);
    let tokens = Tokens {
        alice: token(&certs, &["alice-*"], false, None),
        reader: token(&certs, &["alice-*"], true, None),
        expired: token(&certs, &["alice-*"], false, Some(1)),
        foreign: token(other.path(), &["*"], false, None),
    };
    // Through every node, so most requests are forwarded with the token.
    for node in &cluster.nodes {
        scopes_hold_through(node, &tokens).await;
    }
    let expected: std::collections::BTreeSet<String> =
        ["from-n1", "from-n2", "from-n3"].map(String::from).into();
    assert_eq!(memories(&cluster, "alice-notes").await, expected);
    assert!(memories(&cluster, "bob-notes").await.is_empty());

    // The node serving a forwarded request checks the token again: a peer
    // forwarding someone else's out-of-scope request is refused there.
    let n2 = &cluster.nodes[1];
    let mut peer = MnemoClient::new(channel_of(n2, &certs, "n1").await);
    let e = peer
        .recall(forwarded(with_token(
            recall_all("bob-notes", "x"),
            &tokens.alice,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

/// Each scope rule, through `node`.
async fn scopes_hold_through(node: &NodeProcess, tokens: &Tokens) {
    let Tokens {
        alice,
        reader,
        expired,
        foreign,
    } = tokens;
    let mut c = MnemoClient::new(anonymous(node).await);
    let id = format!("from-{}", node.id);
    c.remember(with_token(
        remember("alice-notes", &id, "alice's note", v1::Ack::Quorum),
        alice,
    ))
    .await
    .unwrap();
    let r = c
        .recall(with_token(recall_all("alice-notes", "note"), reader))
        .await
        .unwrap()
        .into_inner();
    assert!(ids(&r).contains(&id), "{r:?}");

    let e = c
        .recall(with_token(recall_all("bob-notes", "note"), alice))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("\"bob-notes\""), "{e:?}");

    let e = c
        .remember(with_token(
            remember("alice-notes", "ro", "read only", v1::Ack::Primary),
            reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("read-only"), "{e:?}");
    let e = c
        .forget(with_token(
            v1::ForgetRequest {
                space: "alice-notes".into(),
                id: id.clone(),
                ..Default::default()
            },
            reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    let e = c
        .query(with_token(
            v1::QueryRequest {
                spaces: vec!["alice-notes".into(), "bob-notes".into(), "carol".into()],
                cue: "note".into(),
                ..Default::default()
            },
            alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("\"bob-notes\"") && e.message().contains("\"carol\""),
        "{e:?}"
    );

    for (what, bad) in [("expired", &expired), ("foreign", &foreign)] {
        let e = c
            .recall(with_token(recall_all("alice-notes", "note"), bad))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
    }
    let e = c
        .status(with_token(v1::StatusRequest {}, alice))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_makes_and_presents_tokens() {
    let cluster = Cluster::start_secure(3, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let n2 = &cluster.nodes[1];
    // The command line: a token from `mnemo token create`, and the CLI's
    // --token.
    let out = support::mnemo_with_certs(&certs)
        .args(["token", "create", "--spaces", "alice-*", "--expires", "1h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let node = cluster.nodes[2].node_flag();
    let out = n2
        .command()
        .args([
            "recall",
            "--space",
            "bob-notes",
            "--node",
            &node,
            "--token",
            &cli_token,
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not open space \"bob-notes\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = n2
        .command()
        .args([
            "remember",
            "--space",
            "alice-notes",
            "--node",
            &node,
            "--token",
        ])
        .args([&cli_token, "a note of alice's"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = n2
        .command()
        .args([
            "recall",
            "--json",
            "--space",
            "alice-notes",
            "--node",
            &node,
            "--token",
            &cli_token,
            "note",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_join_or_gossip() {
    let cluster = Cluster::start_secure(3, &["--http", "127.0.0.1:0"]).await;
    let n1 = &cluster.nodes[0];
    // A node of another cluster (its own CA and cluster key) pointed at n1.
    let other = tempfile::tempdir().unwrap();
    let other_certs = other.path().join("certs");
    support::make_certs(&other_certs, 9);
    let mut flags: Vec<&str> = support::TEST_NODE_FLAGS.to_vec();
    let seed = n1.addr.to_string();
    flags.extend(["--join", &seed]);
    let stranger = NodeProcess::start_secure(
        &other_certs,
        "n9",
        &other.path().join("n9"),
        "127.0.0.1:0",
        &flags,
    );
    // n1 refuses the stranger's packets. Wait until it has refused several
    // (time passes by events, not by a sleep), then look at both views.
    eventually("n1 refusing the stranger's gossip", || {
        let page = support::https_get(n1, "/metrics");
        let refused = support::metric_sum(&page, "mnemo_gossip_rejected_total");
        std::future::ready((refused >= 5.0).then_some(()))
    })
    .await;
    for node in &cluster.nodes {
        let status = node.status().await;
        let members: Vec<&str> = status.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(members.len(), 3, "{}: {members:?}", node.id);
        assert!(!members.contains(&"n9"), "{}: {members:?}", node.id);
    }
    let strangers_view = stranger.status().await;
    let members: Vec<&str> = strangers_view
        .members
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(members, ["n9"], "the stranger saw {members:?}");
}

/// Runs `command`, which must fail, and gives its stderr.
fn refused(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "{command:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_insecure_node_stays_on_loopback_and_a_node_needs_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let node = |args: &[&str]| {
        let mut c = support::mnemo();
        c.arg("node").args(args).arg("--data-dir").arg(dir.path());
        c
    };
    let stderr = refused(&mut node(&["--listen", "0.0.0.0:0"]));
    assert!(
        stderr.contains("loopback") && stderr.contains("--listen 0.0.0.0:0"),
        "{stderr}"
    );
    let stderr = refused(&mut node(&[
        "--http",
        "0.0.0.0:0",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(stderr.contains("--http 0.0.0.0:0"), "{stderr}");
    let stderr = refused(node(&["--listen", "127.0.0.1:0"]).env_remove("MNEMO_INSECURE"));
    assert!(
        stderr.contains("needs certificates") && stderr.contains("--insecure"),
        "{stderr}"
    );
    // Nothing was started: the data directory was never opened.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `message` with token `t`, marked as forwarded if `marker`.
fn wrap<T>(message: T, t: &str, marker: bool) -> tonic::Request<T> {
    let r = with_token(message, t);
    if marker { forwarded(r) } else { r }
}

/// Every public method checks the token before it does anything, at the
/// edge and again where a forwarded request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_checks_the_token() {
    let cluster = Cluster::start_secure(3, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let n1 = &cluster.nodes[0];
    let mut operator = n1.client().await;
    operator
        .remember(remember("bob", "b", "bob's memory", v1::Ack::Quorum))
        .await
        .unwrap();
    let alice = token(&certs, &["alice-*"], false, None);
    let reader = token(&certs, &["*"], true, None);

    let mut edge = MnemoClient::new(anonymous(n1).await);
    // As a peer node forwarding a client's request (the serving node's check).
    let mut peer = MnemoClient::new(channel_of(&cluster.nodes[1], &certs, "n1").await);
    let get = || v1::GetRequest {
        space: "bob".into(),
        id: "b".into(),
    };
    let list = || v1::ListRequest {
        space: "bob".into(),
        ..Default::default()
    };
    let forget = || v1::ForgetRequest {
        space: "bob".into(),
        id: "b".into(),
        ..Default::default()
    };
    let consolidate = || v1::ConsolidateRequest {
        space: "bob".into(),
        dry_run: false,
        threshold: None,
    };
    let write = || remember("bob", "w", "written by a stranger", v1::Ack::Primary);
    let mut refusals = Vec::new();
    for (t, read_only, marker) in [
        (&alice, false, false),
        (&alice, false, true),
        (&reader, true, false),
        (&reader, true, true),
    ] {
        let c = if marker { &mut peer } else { &mut edge };
        if !read_only {
            refusals.push(("get", c.get(wrap(get(), t, marker)).await.map(|_| ())));
            refusals.push(("list", c.list(wrap(list(), t, marker)).await.map(|_| ())));
            refusals.push((
                "recall",
                c.recall(wrap(recall_all("bob", "x"), t, marker))
                    .await
                    .map(|_| ()),
            ));
            refusals.push((
                "locate",
                c.locate(wrap(
                    v1::LocateRequest {
                        space: "bob".into(),
                    },
                    t,
                    marker,
                ))
                .await
                .map(|_| ()),
            ));
        }
        refusals.push((
            "remember",
            c.remember(wrap(write(), t, marker)).await.map(|_| ()),
        ));
        refusals.push((
            "forget",
            c.forget(wrap(forget(), t, marker)).await.map(|_| ()),
        ));
        refusals.push((
            "consolidate",
            c.consolidate(wrap(consolidate(), t, marker))
                .await
                .map(|_| ()),
        ));
        refusals.push((
            "decommission",
            c.decommission(wrap(v1::DecommissionRequest {}, t, marker))
                .await
                .map(|_| ()),
        ));
    }
    for (what, result) in refusals {
        let e = result.expect_err(what);
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    }
    // Nothing changed, and every node still serves.
    let expected: std::collections::BTreeSet<String> = ["b".to_owned()].into();
    assert_eq!(memories(&cluster, "bob").await, expected);
    for node in &cluster.nodes {
        assert_eq!(node.status().await.members.len(), 3, "{}", node.id);
    }
}

#[test]
fn a_node_refuses_key_material_it_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    support::make_certs(&certs, 1);
    let start = |id: &str| {
        let mut c = support::mnemo_with_certs(&certs);
        c.args(["node", "--id", id, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"));
        c
    };
    // The client certificate is not a node's.
    let stderr = refused(&mut start("client"));
    assert!(stderr.contains("not a node certificate"), "{stderr}");

    // A key others may read.
    let key = certs.join("n1.key");
    let mode = |m| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o644);
    let stderr = refused(&mut start("n1"));
    assert!(stderr.contains("chmod 600"), "{stderr}");
    mode(0o600);

    // `certs create` without the CA's key makes no second CA.
    std::fs::remove_file(certs.join("ca.key")).unwrap();
    let stderr = refused(
        support::mnemo()
            .args(["certs", "create", "--nodes", "n2", "--dir"])
            .arg(&certs),
    );
    assert!(stderr.contains("without ca.key"), "{stderr}");
    assert!(!certs.join("n2.crt").exists());

    // --insecure from a config file is held to loopback too.
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "insecure = true\nlisten = \"0.0.0.0:0\"\n").unwrap();
    let stderr = refused(
        support::mnemo()
            .env_remove("MNEMO_INSECURE")
            .args(["node", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config),
    );
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// A stream outlives the gate's check at its start: once the caller's token
/// expires, the stream ends with UNAUTHENTICATED and takes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let cluster = Cluster::start_secure(1, &[]).await;
    let certs = cluster.certs.clone().unwrap();
    let node = &cluster.nodes[0];
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let expires = unix_now() + 3;
    let token = token(&certs, &["alice-*"], false, Some(expires));
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut c = MnemoClient::new(anonymous(node).await);
    let mut answers = c
        .remember_stream(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    tx.send(remember(
        "alice-notes",
        "before",
        "in time",
        v1::Ack::Primary,
    ))
    .await
    .unwrap();
    let first = answers.message().await.unwrap().expect("an answer");
    assert!(
        matches!(
            first.outcome,
            Some(v1::remember_stream_response::Outcome::Remembered(_))
        ),
        "{first:?}"
    );
    // Waiting for the wall clock to pass the expiry the token names.
    let wait = (expires + 1).saturating_sub(unix_now());
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    tx.send(remember(
        "alice-notes",
        "after",
        "too late",
        v1::Ack::Primary,
    ))
    .await
    .unwrap();
    let e = answers.message().await.expect_err("the stream ends");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("expired"), "{e:?}");
    let held = ids(&node.recall(recall_all("alice-notes", "x")).await);
    assert!(
        held.contains("before") && !held.contains("after"),
        "{held:?}"
    );
}

/// A client that opens a connection to the gRPC port and never starts its
/// TLS handshake is dropped: its connection does not stay for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_shakes_hands_is_closed() {
    use tokio::io::AsyncReadExt;
    let cluster = Cluster::start_secure(1, &[]).await;
    let mut silent = tokio::net::TcpStream::connect(cluster.nodes[0].addr)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // The node's handshake timeout is 10 s; a minute means it has none.
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), silent.read(&mut buf))
        .await
        .expect("the node still holds a connection that never shook hands after a minute");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the node closes it without a word: {read:?}"
    );
}

/// Over TLS too, a client's connection with a request in flight (a stream
/// kept open) is kept past the idle limit: the node finds the connection
/// behind TLS. The client comes from 127.0.0.2, not a member's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_stream_in_flight_keeps_its_connection() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    support::make_certs(&certs, 1);
    let node = NodeProcess::start_secure(
        &certs,
        "n1",
        &dir.path().join("n1"),
        "127.0.0.1:0",
        &["--connection-idle-secs", "1"],
    );
    let read = |file: &str| std::fs::read(certs.join(file)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .domain_name("localhost")
        .identity(Identity::from_pem(read("client.crt"), read("client.key")));
    let channel = Endpoint::from_shared(format!("https://{}", node.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .connect()
        .await
        .expect("connect over TLS");
    let write = |id: &str| v1::RememberRequest {
        space: "kept".into(),
        id: id.into(),
        content: "a line".into(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(write("first")).await.unwrap();
    let mut answers = MnemoClient::new(channel)
        .remember_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("a stream")
        .into_inner();
    let remembered = |answer: Option<v1::RememberStreamResponse>| {
        matches!(
            answer.and_then(|a| a.outcome),
            Some(v1::remember_stream_response::Outcome::Remembered(_))
        )
    };
    assert!(remembered(answers.message().await.unwrap()));
    // Well past the limit, the stream still carries requests.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    tx.send(write("second")).await.expect("the stream is open");
    assert!(remembered(answers.message().await.unwrap()));
}
