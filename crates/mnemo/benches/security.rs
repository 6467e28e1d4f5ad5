//! What security costs, on real 3-node clusters on loopback, measured in
//! one interleaved run (not criterion: it needs whole clusters):
//!
//! - a recall served by the space's primary, asked directly and through
//!   another node (forwarded), on an insecure cluster and on a secure one
//!   with the client certificate and with a bearer token (checked at the
//!   edge and again where it is served);
//! - a new channel: connect plus the first recall, plaintext and TLS;
//! - checking one token alone.
//!
//! `cargo bench -p mnemo --bench security [-- --samples N]`. Numbers are
//! printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemo_node::security::{Claims, token_key};
use mnemo_proto::v1::{self, mnemo_client::MnemoClient};
use support::{Cluster, NodeProcess, micros, percentile};
use tonic::transport::Channel;

const SPACE: &str = "latency";

fn recall() -> tonic::Request<v1::RecallRequest> {
    tonic::Request::new(v1::RecallRequest {
        space: SPACE.into(),
        cue: "where is the meeting".into(),
        k: Some(5),
        ..Default::default()
    })
}

/// One way of asking: a client, and the token it sends (if any).
struct Way {
    name: &'static str,
    client: MnemoClient<Channel>,
    token: Option<String>,
    times: Vec<Duration>,
}

impl Way {
    fn request(&self) -> tonic::Request<v1::RecallRequest> {
        let mut r = recall();
        if let Some(t) = &self.token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    async fn round(&mut self, samples: usize) {
        for _ in 0..samples / 10 {
            self.client.recall(self.request()).await.unwrap();
        }
        for _ in 0..samples {
            let r = self.request();
            let start = Instant::now();
            self.client.recall(r).await.unwrap();
            self.times.push(start.elapsed());
        }
    }
}

async fn seeded(cluster: &Cluster) -> (&NodeProcess, &NodeProcess) {
    let mut c = cluster.nodes[0].client().await;
    for i in 0..100 {
        support::remember_meeting(&mut c, SPACE, i).await;
    }
    let primary = cluster.locate_everywhere(SPACE).await.primary.unwrap().id;
    (cluster.node(&primary), cluster.node_other_than(&[&primary]))
}

async fn steady(samples: usize) {
    let insecure = Cluster::start(3).await;
    let secure = Cluster::start_secure(3, &[]).await;
    let certs = secure.certs.clone().unwrap();
    let token = token_key(&certs).unwrap().sign(&Claims {
        spaces: vec!["lat*".into()],
        read_only: true,
        expires: None,
    });
    let (i_primary, i_other) = seeded(&insecure).await;
    let (s_primary, s_other) = seeded(&secure).await;
    let way = |name, client, token: Option<&String>| Way {
        name,
        client,
        token: token.cloned(),
        times: Vec::new(),
    };
    let mut ways = vec![
        way("insecure direct", i_primary.client().await, None),
        way("insecure forwarded", i_other.client().await, None),
        way("TLS+cert direct", s_primary.client().await, None),
        way("TLS+cert forwarded", s_other.client().await, None),
        way(
            "TLS+token direct",
            MnemoClient::new(support::tls_channel(s_primary.addr, &certs, None).await),
            Some(&token),
        ),
        way(
            "TLS+token forwarded",
            MnemoClient::new(support::tls_channel(s_other.addr, &certs, None).await),
            Some(&token),
        ),
    ];
    // Interleaved rounds, so every way sees the same machine conditions.
    for _ in 0..5 {
        for w in &mut ways {
            w.round(samples / 5).await;
        }
    }
    println!("recall (k=5, 100 memories), {samples} samples each, 1 client:");
    for w in &mut ways {
        w.times.sort();
        println!(
            "  {:<20} p50 {:>7.1} µs  p99 {:>7.1} µs",
            w.name,
            micros(percentile(&w.times, 0.5)),
            micros(percentile(&w.times, 0.99))
        );
    }

    // A new channel each time: connect, then the first recall.
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let mut c = MnemoClient::connect(format!("http://{}", i_primary.addr))
            .await
            .unwrap();
        c.recall(recall()).await.unwrap();
        plain.push(start.elapsed());
        let start = Instant::now();
        let mut c = support::secure_client(s_primary.addr, &certs).await;
        c.recall(recall()).await.unwrap();
        tls.push(start.elapsed());
    }
    plain.sort();
    tls.sort();
    println!("new channel, connect + first recall, 200 each:");
    for (name, t) in [("plaintext", &plain), ("TLS (mutual)", &tls)] {
        println!(
            "  {name:<20} p50 {:>7.1} µs  p99 {:>7.1} µs",
            micros(percentile(t, 0.5)),
            micros(percentile(t, 0.99))
        );
    }

    let key = token_key(&certs).unwrap();
    let n = 100_000u32;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.verify(std::hint::black_box(&token), 0).unwrap());
    }
    println!(
        "checking one token: {:.2} µs",
        micros(start.elapsed()) / f64::from(n)
    );
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let samples: usize = support::bench_arg(&args, "--samples", 5000);
    rt.block_on(steady(samples));
}
