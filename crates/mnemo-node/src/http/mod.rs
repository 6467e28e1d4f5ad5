//! `--http HOST:PORT`: the HTTP/JSON API under `/v1` ([`api`]) with its
//! OpenAPI document at `/v1/openapi.json`, Prometheus text at `/metrics`,
//! and `/livez`, `/readyz` (and `/health`) for probes. On a secure node
//! the port speaks TLS with the node's certificate (`tls`) and `/v1`
//! takes the same credentials as gRPC; the probes, the metrics and the
//! OpenAPI document need none.

pub mod api;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tonic::metadata::AsciiMetadataValue;

use crate::config::MAX_MESSAGE_BYTES;
use crate::node::Node;
use crate::security::Gate;
use crate::service::MnemoService;
use tls::{Peer, PlainListener, TlsListener};

/// The process-wide Prometheus recorder, installed on first use. Call it
/// before starting a node so that no early metric is lost.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = crate::telemetry::buckets(PrometheusBuilder::new()).build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several nodes in one
        // test process); the handle still renders this recorder's view.
        if metrics::set_global_recorder(recorder).is_ok() {
            crate::telemetry::describe();
            drain_histograms(handle.clone());
        }
        handle
    })
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps each histogram sample until it is folded into the
/// buckets, which a scrape does, or this upkeep: without it, a node nobody
/// scrapes would grow by every request it times (about 40 bytes each),
/// for as long as it runs. A thread of its own, as the recorder is the
/// process's, whichever runtimes come and go.
fn drain_histograms(handle: PrometheusHandle) {
    let upkeep = move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("mnemo-metrics".into())
        .spawn(upkeep)
    {
        tracing::warn!(error = %e, "cannot start the metrics upkeep; only scrapes will fold histograms");
    }
}

/// Binds `addr` and serves until the process ends.
pub(crate) async fn serve(addr: SocketAddr, node: Arc<Node>) -> std::io::Result<SocketAddr> {
    let handle = prometheus();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let security = node.config.security.clone();
    let places = Arc::clone(&node.places);
    let idle =
        crate::places::Idle::after(node.config.connection_idle, crate::places::Activity::Bytes);
    let (api, doc) = api::routes(MnemoService::new(Arc::clone(&node)));
    let doc = Arc::new(doc.to_json().map_err(std::io::Error::other)?);
    let api = api
        .layer(middleware::from_fn(read_body_first))
        .layer(middleware::from_fn_with_state(
            Gate::new(security.clone()),
            authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(middleware::from_fn(timed));
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(health))
        .with_state((node, handle))
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .merge(api)
        .into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move {
        let served = match security {
            Some(s) => {
                let tls = Arc::clone(&s.http_tls);
                axum::serve(TlsListener::new(listener, tls, (places, idle)), app).await
            }
            None => axum::serve(PlainListener::new(listener, (places, idle)), app).await,
        };
        if let Err(e) = served {
            tracing::warn!(error = %e, "http server stopped");
        }
    });
    Ok(bound)
}

/// Times a `/v1` request by its route (the template, never the space) and
/// status.
async fn timed(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "mnemo_http_request_duration_seconds",
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Refuses what a web browser sends on a page's behalf. The API is for
/// programs; a page must not write to, or through DNS rebinding read from,
/// a node on the developer's machine (an insecure node trusts every
/// caller, and a client certificate in the browser would be presented
/// for any page).
fn from_a_program(gate: &Gate, request: &Request) -> Result<(), tonic::Status> {
    let headers = request.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v != "same-origin" && v != "none");
    if headers.contains_key(header::ORIGIN) || cross_site {
        return Err(tonic::Status::permission_denied(
            "requests from web pages (with an Origin header) are refused; call the API from a program",
        ));
    }
    if !gate.is_secure() {
        // HTTP/2 names the host in the URI's authority, HTTP/1.1 in Host.
        let host = request.uri().authority().map_or_else(
            || {
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
            },
            |a| a.as_str(),
        );
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let loopback = name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(tonic::Status::permission_denied(format!(
                "an insecure node answers requests for loopback host names only, not {host:?}"
            )));
        }
    }
    Ok(())
}

/// Records who calls a `/v1` route, by the same rules as gRPC, or refuses.
async fn authenticate(
    State(gate): State<Gate>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = from_a_program(&gate, &request) {
        return refuse(request, refusal).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| AsciiMetadataValue::try_from(v.as_bytes()))
        .transpose();
    let Ok(authorization) = authorization else {
        let refusal = tonic::Status::unauthenticated("the authorization header is not ASCII");
        return refuse(request, refusal).await;
    };
    match gate.caller(peer.certificate.as_ref(), authorization.as_ref()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refuse(request, refusal).await,
    }
}

/// `refusal`, once what `request` sends has been read and thrown away.
async fn refuse(request: Request, refusal: tonic::Status) -> Response {
    discard_body(request).await;
    api::ApiError(refusal).into_response()
}

/// Longest a refused request's body is waited for before the refusal goes
/// out anyway.
const DISCARD_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and throws away what a refused request sends (up to the message
/// limit, for at most [`DISCARD_FOR`]), so that the refusal does not race
/// the body's arrival (see [`read_body_first`]). A body announced over the
/// limit, or one the client waits to be asked for, is not waited for.
async fn discard_body(request: Request) {
    use http_body_util::BodyExt;
    // A client that waits to be told to send (`Expect: 100-continue`) has
    // sent nothing to race; reading would invite the upload.
    let waits = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if waits || announced_length(&request).is_some_and(|n| n > MAX_MESSAGE_BYTES) {
        return;
    }
    let mut body = http_body_util::Limited::new(request.into_body(), MAX_MESSAGE_BYTES);
    let _ = tokio::time::timeout(DISCARD_FOR, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// The body length a request announces (`Content-Length`), if any.
fn announced_length(request: &Request) -> Option<usize> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

/// Reads an authenticated request's whole body (up to the message limit)
/// before its handler runs. A refusal that comes before the handler reads
/// the body (a bad path, a bad parameter) would otherwise leave it unread:
/// the server then closes the connection while the body may still be
/// arriving, and the reset the kernel sends for unread data can wipe the
/// refusal off the client's socket before the client reads it. Read, the
/// connection stays open for the next request. A body announced over the
/// limit is left to the handler, which refuses it unread if it wants one.
async fn read_body_first(request: Request, next: Next) -> Response {
    if announced_length(&request).is_some_and(|n| n > MAX_MESSAGE_BYTES) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) => next.run(Request::from_parts(parts, bytes.into())).await,
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
            if over {
                api::too_large()
            } else {
                let refusal = tonic::Status::invalid_argument(format!("cannot read the body: {e}"));
                api::ApiError(refusal).into_response()
            }
        }
    }
}

type AppState = (Arc<Node>, &'static PrometheusHandle);

async fn metrics_text(State((node, handle)): State<AppState>) -> impl IntoResponse {
    crate::telemetry::store_gauges(&node);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// The process runs (Kubernetes' liveness).
async fn livez() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"alive\"}",
    )
}

/// The node serves: 200 once it has joined, 503 before, exactly when gRPC
/// health says SERVING and NOT_SERVING.
async fn health(State((node, _)): State<AppState>) -> impl IntoResponse {
    let serving = node.joined.load(std::sync::atomic::Ordering::Acquire);
    let (code, status) = if serving {
        (StatusCode::OK, "serving")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_serving")
    };
    let body = serde_json::json!({
        "node_id": node.id,
        "status": status,
        "partition": if node.router.partition().partitioned { "partitioned" } else { "connected" },
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
