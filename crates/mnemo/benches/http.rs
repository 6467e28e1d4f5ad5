//! The HTTP/JSON API beside gRPC, on one secure node process (not
//! criterion: it needs a real node):
//!
//! - recall (k=5, 100 memories) over gRPC and over HTTPS, one client each,
//!   keep-alive, interleaved rounds; with `--python PATH` also through the
//!   Python client (`clients/python/bench.py`, run by that interpreter);
//! - the size of `/metrics` with 10 and with 10,000 spaces (it must not
//!   grow with the number of spaces).
//!
//! `cargo bench -p mnemo --bench http [-- --samples N --python PATH]`.
//! Numbers are printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::{Cluster, micros, percentile};

fn report(name: &str, times: &mut [Duration]) {
    times.sort();
    println!(
        "  {name:<20} p50 {:>7.1} µs  p99 {:>7.1} µs",
        micros(percentile(times, 0.5)),
        micros(percentile(times, 0.99))
    );
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let samples: usize = support::bench_arg(&args, "--samples", 5000);
    let python: Option<String> = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1).cloned());
    rt.block_on(async move {
        let cluster = Cluster::start_secure(1, &["--http", "127.0.0.1:0"]).await;
        let certs = cluster.certs.clone().unwrap();
        let node = &cluster.nodes[0];
        let mut grpc = node.client().await;
        for i in 0..100 {
            support::remember_meeting(&mut grpc, "latency", i).await;
        }
        let agent = support::https_agent(&certs, Some("client"));
        let base = format!("https://{}", node.http.clone().unwrap());
        let url = format!("{base}/v1/spaces/latency/recall");
        let metrics_agent = agent.clone();
        let metrics_url = format!("{base}/metrics");
        let metrics_size = move || {
            metrics_agent
                .get(&metrics_url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
                .len()
        };
        let http_recall = move || {
            let start = Instant::now();
            let body: serde_json::Value = agent
                .post(&url)
                .send_json(serde_json::json!({"cue": "where is the meeting", "k": 5}))
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap();
            assert_eq!(body["memories"].as_array().unwrap().len(), 5);
            start.elapsed()
        };
        let (mut g, mut h) = (Vec::new(), Vec::new());
        let http_recall = Arc::new(http_recall);
        for round in 0..6 {
            // The first round warms both up and is not counted.
            let n = if round == 0 {
                samples / 10
            } else {
                samples / 5
            };
            let mut gt = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                grpc.recall(v1::RecallRequest {
                    space: "latency".into(),
                    cue: "where is the meeting".into(),
                    k: Some(5),
                    ..Default::default()
                })
                .await
                .unwrap();
                gt.push(start.elapsed());
            }
            let f = Arc::clone(&http_recall);
            let ht = tokio::task::spawn_blocking(move || (0..n).map(|_| f()).collect::<Vec<_>>())
                .await
                .unwrap();
            if round > 0 {
                g.extend(gt);
                h.extend(ht);
            }
        }
        println!("recall (k=5, 100 memories), one secure node, 1 client, {samples} samples each:");
        report("gRPC", &mut g);
        report("HTTPS/JSON", &mut h);
        if let Some(python) = python {
            let out = std::process::Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../clients/python/bench.py"
                ))
                .arg(&base)
                .arg(&certs)
                .arg(samples.to_string())
                .output()
                .unwrap();
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }

        // /metrics with 10, then 10,000 spaces.
        for i in 0..10 {
            support::remember_meeting(&mut grpc, &format!("space-{i}"), i).await;
        }
        let small = metrics_size();
        for i in 10..10_000 {
            support::remember_meeting(&mut grpc, &format!("space-{i}"), i).await;
        }
        let large = metrics_size();
        println!("/metrics: {small} bytes with 11 spaces, {large} bytes with 10,001 spaces");
    });
}
