//! What tools and orchestrators ask a node: gRPC reflection (v1 and
//! v1alpha), gRPC health, and the HTTP probes, which agree with it.

mod support;

use support::NodeProcess;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn channel(node: &NodeProcess) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `async fn $name(channel) -> Vec<String>`: the services reflection
/// version `$version` lists (v1 and v1alpha are the same protocol in two
/// packages).
macro_rules! list_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            let answer = answers.message().await.unwrap().unwrap();
            match answer.message_response.unwrap() {
                MessageResponse::ListServicesResponse(list) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("not a list of services: {other:?}"),
            }
        }
    };
}

list_services!(services_v1, v1);
list_services!(services_v1alpha, v1alpha);

async fn grpc_health(node: &NodeProcess) -> ServingStatus {
    let status = HealthClient::new(channel(node).await)
        .check(HealthCheckRequest {
            service: "mnemo.v1.Mnemo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// Status line and body of an HTTP GET.
fn probe(node: &NodeProcess, path: &str) -> (u16, String) {
    let page = support::http_get(node.http.as_ref().unwrap(), path);
    let status = page
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_health_and_probes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    for services in [
        services_v1(channel(&node).await).await,
        services_v1alpha(channel(&node).await).await,
    ] {
        for wanted in [
            "mnemo.v1.Mnemo",
            "mnemo.v1.Internal",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == wanted),
                "{wanted} in {services:?}"
            );
        }
    }
    assert_eq!(grpc_health(&node).await, ServingStatus::Serving);
    assert_eq!(probe(&node, "/livez").0, 200);
    let (status, page) = probe(&node, "/readyz");
    assert!(status == 200 && page.contains("\"serving\""), "{page}");

    // A node whose seeds never answer has not joined: NOT_SERVING in gRPC,
    // 503 on /readyz, alive on /livez.
    let lonely_dir = tempfile::tempdir().unwrap();
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let seed = nobody.local_addr().unwrap().to_string();
    let lonely = NodeProcess::start(
        "n2",
        lonely_dir.path(),
        "127.0.0.1:0",
        &["--http", "127.0.0.1:0", "--join", &seed],
    );
    assert_eq!(grpc_health(&lonely).await, ServingStatus::NotServing);
    let (status, page) = probe(&lonely, "/readyz");
    assert!(status == 503 && page.contains("not_serving"), "{page}");
    assert_eq!(probe(&lonely, "/health").0, 503);
    assert_eq!(probe(&lonely, "/livez").0, 200);
}

/// The metric family a sample line belongs to (histogram parts folded in).
fn family(sample: &str) -> &str {
    let name = sample.split(['{', ' ']).next().unwrap_or_default();
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_fit_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    let http = node.http.clone().unwrap();
    // Histogram samples are folded into buckets by a thread of the node's
    // own, not only by scrapes (which a node may never get): else every
    // timed request would stay in memory for good.
    let threads = node.thread_names();
    assert!(
        threads.iter().any(|t| t == "mnemo-metrics"),
        "no metrics upkeep thread in node n1: {threads:?}"
    );
    // Before any request: counters already there, at zero.
    let page = support::http_get(&http, "/metrics");
    for series in [
        "mnemo_router_retries_total{operation=\"recall\"} 0",
        "mnemo_router_hedges_total 0",
        "mnemo_gossip_rejected_total 0",
        "mnemo_replication_errors_total 0",
        "mnemo_store_checkpoints_total 0",
    ] {
        assert!(page.contains(series), "{series} missing from:\n{page}");
    }

    let mut c = node.client().await;
    for i in 0..3 {
        c.remember(support::remember(
            &format!("space-{i}"),
            "a",
            "a memory",
            mnemo_proto::v1::Ack::Primary,
        ))
        .await
        .unwrap();
    }
    c.recall(support::recall_all("space-0", "memory"))
        .await
        .unwrap();
    let bad = c.recall(support::recall_all("bad space", "x")).await;
    assert!(bad.is_err());
    let page = support::http_get(&http, "/metrics");
    let body = page.split("\r\n\r\n").nth(1).unwrap_or_default();

    // Every family is described and typed; no series is labelled by space.
    let described: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let typed: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for sample in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f = family(sample);
        assert!(described.contains(&f), "no HELP for {f}");
        assert!(typed.contains(&f), "no TYPE for {f}");
        assert!(!sample.contains("space=\""), "a per-space label: {sample}");
    }
    // Latencies are histograms, per operation and outcome.
    for series in [
        "mnemo_request_duration_seconds_bucket{service=\"public\",operation=\"recall\",role=\"edge\",outcome=\"ok\",le=",
        "mnemo_request_duration_seconds_count{service=\"public\",operation=\"recall\",role=\"edge\",outcome=\"invalid_argument\"} 1",
        "mnemo_store_commit_seconds_bucket{le=",
        "mnemo_store_memories 3",
        "mnemo_store_spaces 3",
    ] {
        assert!(body.contains(series), "{series} missing from:\n{body}");
    }

    // promtool, where Debian's prometheus package put it.
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Err(_) => {
            eprintln!("promtool check skipped: promtool is not installed (Debian: prometheus)");
        }
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
