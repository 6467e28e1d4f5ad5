//! What a node tells Prometheus: every series described (HELP and TYPE),
//! counters present at zero from the start, latencies as histograms (they
//! add up across nodes, summaries do not), and nothing labelled per space
//! (one space per user would mean unbounded series; `status` names spaces).
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `mnemo_request_duration_seconds` | histogram | service, operation, role (edge, serve, forward), outcome |
//! | `mnemo_http_request_duration_seconds` | histogram | route, status |
//! | `mnemo_store_commit_seconds`, `mnemo_store_batch_writes` | histogram | |
//! | `mnemo_store_spaces`, `_memories`, `_forgotten`, `_disk_bytes` | gauge | |
//! | `mnemo_connections` | gauge | port (grpc, http) |
//! | `mnemo_connections_refused_total`, `mnemo_connections_idle_closed_total` | counter | port |
//! | `mnemo_router_*`, `mnemo_cluster_*`, `mnemo_gossip_*` | see their crates | |
//! | `mnemo_replication_*`, `mnemo_antientropy_*`, `mnemo_merge_refused_total`, `mnemo_catching_up_refusals_total` | counter | `mnemo_antientropy_catchups_total`: outcome |

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::Matcher;
use tonic::codegen::http;

use crate::node::Node;

/// Latency buckets, in seconds: 100 µs to 10 s.
pub(crate) const SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
/// Writes per group commit.
const BATCH: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 2048.0];

/// The builder's bucket settings for the histograms above.
pub(crate) fn buckets(
    builder: metrics_exporter_prometheus::PrometheusBuilder,
) -> metrics_exporter_prometheus::PrometheusBuilder {
    builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("mnemo_store_batch_writes".into()), &BATCH)
        })
        .expect("bucket lists are not empty")
}

/// Describes every series of a node and creates its counters at zero.
pub(crate) fn describe() {
    mnemo_router::metrics::describe();
    mnemo_cluster::describe_metrics();
    mnemo_store::describe_metrics();
    describe_histogram!(
        "mnemo_request_duration_seconds",
        Unit::Seconds,
        "gRPC requests by operation, role (edge: from a client, serve: forwarded here, \
         forward: sent from here to a peer) and outcome (the gRPC code)"
    );
    describe_histogram!(
        "mnemo_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP API requests by route and status"
    );
    describe_gauge!("mnemo_store_spaces", "Spaces this node holds data of");
    describe_connections();
    describe_gauge!(
        "mnemo_store_memories",
        "Live memories this node holds, all spaces"
    );
    describe_gauge!(
        "mnemo_store_forgotten",
        "Forgotten ids (tombstones) this node keeps, all spaces"
    );
    describe_gauge!(
        "mnemo_store_disk_bytes",
        Unit::Bytes,
        "Size of the node's data directory"
    );
    for (name, help) in [
        (
            "mnemo_replication_undelivered_total",
            "Writes a peer did not confirm; anti-entropy repairs them",
        ),
        (
            "mnemo_replication_refused_total",
            "Replicated elements a peer refused as invalid",
        ),
        (
            "mnemo_replication_errors_total",
            "Replication calls that failed",
        ),
        (
            "mnemo_antientropy_syncs_total",
            "Anti-entropy comparisons with another holder",
        ),
        (
            "mnemo_antientropy_compares_total",
            "One-round comparisons with another holder by a read answered in the primary's \
             place, by result: complete (nothing to fetch), lacking (elements fetched), \
             too_different, unsupported (both reconciled in full instead)",
        ),
        (
            "mnemo_antientropy_reconcile_bytes_total",
            "Bytes of set reconciliation messages sent",
        ),
        (
            "mnemo_antientropy_element_bytes_total",
            "Bytes of memories and tombstones moved by anti-entropy",
        ),
        (
            "mnemo_antientropy_handed_over_total",
            "Spaces handed to their other holders before leaving",
        ),
        (
            "mnemo_merge_refused_total",
            "Elements from peers refused as invalid",
        ),
        (
            "mnemo_catching_up_refusals_total",
            "Reads refused because this holder is still catching up",
        ),
    ] {
        describe_counter!(name, help);
        counter!(name).absolute(0);
    }
    describe_counter!(
        "mnemo_antientropy_catchups_total",
        "Catch-ups of a space with its other holders, by outcome"
    );
    for outcome in ["caught_up", "failed"] {
        counter!("mnemo_antientropy_catchups_total", "outcome" => outcome).absolute(0);
    }
    for direction in ["pulled", "pushed"] {
        describe_counter!(
            "mnemo_antientropy_elements_total",
            "Elements moved by anti-entropy"
        );
        counter!("mnemo_antientropy_elements_total", "direction" => direction).absolute(0);
    }
}

/// Sets the store gauges from what the node holds now (at each scrape:
/// cheap next to a scrape, and never stale).
pub(crate) fn store_gauges(node: &Node) {
    let spaces = node.store.spaces();
    gauge!("mnemo_store_spaces").set(spaces.len() as f64);
    gauge!("mnemo_store_memories").set(spaces.iter().map(|s| s.memories as f64).sum::<f64>());
    gauge!("mnemo_store_forgotten").set(spaces.iter().map(|s| s.tombstones as f64).sum::<f64>());
    let disk: u64 = std::fs::read_dir(&node.config.data_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum();
    gauge!("mnemo_store_disk_bytes").set(disk as f64);
}

/// The gRPC code name (lower case) of a status code, for labels.
pub(crate) fn outcome(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Records one gRPC request's latency.
pub(crate) fn request(
    service: &'static str,
    operation: &'static str,
    role: &'static str,
    code: tonic::Code,
    started: Instant,
) {
    metrics::histogram!(
        "mnemo_request_duration_seconds",
        "service" => service,
        "operation" => operation,
        "role" => role,
        "outcome" => outcome(code)
    )
    .record(started.elapsed().as_secs_f64());
}

/// The service and operation of a gRPC path, for the fixed set mnemo
/// serves (anything else, such as reflection, is not timed).
fn operation_of(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/mnemo.v1.Mnemo/Remember" => ("public", "remember"),
        "/mnemo.v1.Mnemo/Recall" => ("public", "recall"),
        "/mnemo.v1.Mnemo/Forget" => ("public", "forget"),
        "/mnemo.v1.Mnemo/Get" => ("public", "get"),
        "/mnemo.v1.Mnemo/List" => ("public", "list"),
        "/mnemo.v1.Mnemo/Consolidate" => ("public", "consolidate"),
        "/mnemo.v1.Mnemo/Query" => ("public", "query"),
        "/mnemo.v1.Mnemo/Locate" => ("public", "locate"),
        "/mnemo.v1.Mnemo/Status" => ("public", "status"),
        "/mnemo.v1.Mnemo/Decommission" => ("public", "decommission"),
        "/mnemo.v1.Internal/Merge" => ("internal", "merge"),
        "/mnemo.v1.Internal/Reconcile" => ("internal", "reconcile"),
        "/mnemo.v1.Internal/Compare" => ("internal", "compare"),
        "/mnemo.v1.Internal/Fetch" => ("internal", "fetch"),
        "/mnemo.v1.Internal/Spaces" => ("internal", "spaces"),
        _ => return None,
    })
}

/// The connection metrics (see `crate::places`), at zero for each port.
fn describe_connections() {
    describe_gauge!(
        "mnemo_connections",
        "Connections open (clients and peers), by port"
    );
    describe_counter!(
        "mnemo_connections_refused_total",
        "Connections closed on arrival: --max-connections were open"
    );
    describe_counter!(
        "mnemo_connections_idle_closed_total",
        "Clients' connections closed idle (--connection-idle-secs)"
    );
    for port in crate::places::PORTS {
        gauge!("mnemo_connections", "port" => port).set(0.0);
        counter!("mnemo_connections_refused_total", "port" => port).absolute(0);
        counter!("mnemo_connections_idle_closed_total", "port" => port).absolute(0);
    }
}

/// Times every gRPC request the node serves. The outcome is read from the
/// answer's headers: a unary refusal is a trailers-only answer with its
/// `grpc-status` there; an answer without one is a success.
#[derive(Clone, Copy)]
pub(crate) struct TimedLayer;

impl<S> tower::Layer<S> for TimedLayer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed(inner)
    }
}

/// See [`TimedLayer`].
#[derive(Clone)]
pub(crate) struct Timed<S>(S);

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, incoming: http::Request<B>) -> Self::Future {
        let named = operation_of(incoming.uri().path());
        let role = if incoming.headers().contains_key(mnemo_proto::FORWARDED_BY) {
            "serve"
        } else {
            "edge"
        };
        let started = Instant::now();
        let answer = self.0.call(incoming);
        Box::pin(async move {
            let answer = answer.await;
            if let (Some((service, operation)), Ok(response)) = (named, &answer) {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                request(service, operation, role, code, started);
            }
            answer
        })
    }
}
