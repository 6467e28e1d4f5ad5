//! `--http HOST:PORT`: Prometheus text at `/metrics` (the router's,
//! membership's and replication's metrics) and a liveness answer at
//! `/health`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::node::Node;

/// The process-wide Prometheus recorder, installed on first use. Call it
/// before starting a node so that no early metric is lost.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several nodes in one
        // test process); the handle still renders this recorder's view.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Binds `addr` and serves until the process ends.
pub(crate) async fn serve(addr: SocketAddr, node: Arc<Node>) -> std::io::Result<SocketAddr> {
    let handle = prometheus();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state((node, handle));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "http server stopped");
        }
    });
    Ok(bound)
}

type AppState = (Arc<Node>, &'static PrometheusHandle);

async fn metrics_text(State((_, handle)): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

async fn health(State((node, _)): State<AppState>) -> impl IntoResponse {
    let status = node.status();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"node_id\":\"{}\",\"status\":\"serving\",\"partition\":\"{}\"}}",
            status.node_id, status.partition
        ),
    )
}
