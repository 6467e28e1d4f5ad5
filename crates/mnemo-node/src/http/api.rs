//! The HTTP/JSON API under `/v1`: the gRPC service's operations with JSON
//! bodies. Every handler calls the gRPC service's own handler in process,
//! so validation, limits, messages, the caller's rights and routing are
//! exactly gRPC's. Answers use the shapes of [`crate::json`] (the command
//! line's `--json`); a refusal is `{"error": {"code", "message"}}` with
//! the HTTP status of its gRPC code.
//!
//! The OpenAPI document (`/v1/openapi.json`) is generated from these
//! handlers' annotations by the same router that serves them, so the two
//! cannot drift apart.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mnemo_proto::v1::{self, mnemo_server::Mnemo};
use serde::{Deserialize, Serialize};
use tonic::Code;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::json;
use crate::security::Caller;
use crate::service::MnemoService;

/// Header for the operation's deadline, in milliseconds (gRPC's
/// `grpc-timeout`); absent: the node's default.
pub const TIMEOUT_HEADER: &str = "x-mnemo-timeout-ms";

/// A refusal, as every route answers one.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// The gRPC code's name, e.g. `INVALID_ARGUMENT`.
    code: &'static str,
    /// What to do about it.
    message: String,
}

/// A gRPC status as an HTTP answer.
pub(crate) struct ApiError(pub(crate) tonic::Status);

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError(s)
    }
}

/// The gRPC code's canonical name and the HTTP status it maps to (as
/// Google's HTTP/JSON transcoding maps them).
pub(crate) fn http_of(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("OK", StatusCode::OK),
        Code::Cancelled => ("CANCELLED", StatusCode::from_u16(499).expect("499")),
        Code::Unknown => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("INVALID_ARGUMENT", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("DEADLINE_EXCEEDED", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("ALREADY_EXISTS", StatusCode::CONFLICT),
        Code::PermissionDenied => ("PERMISSION_DENIED", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("RESOURCE_EXHAUSTED", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("FAILED_PRECONDITION", StatusCode::BAD_REQUEST),
        Code::Aborted => ("ABORTED", StatusCode::CONFLICT),
        Code::OutOfRange => ("OUT_OF_RANGE", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("UNIMPLEMENTED", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("DATA_LOSS", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("UNAUTHENTICATED", StatusCode::UNAUTHORIZED),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (_, status) = http_of(self.0.code());
        let body = ErrorBody {
            error: detail(&self.0),
        };
        (status, Json(body)).into_response()
    }
}

/// A status's code name and message, as the body of a refusal says them.
fn detail(status: &tonic::Status) -> ErrorDetail {
    ErrorDetail {
        code: http_of(status.code()).0,
        message: status.message().to_owned(),
    }
}

/// A JSON body (whatever content type it is sent with, so that `curl -d`
/// works) whose rejections answer like every other refusal: too large is
/// `RESOURCE_EXHAUSTED` (413), anything else `INVALID_ARGUMENT` naming what
/// is wrong where.
pub(crate) struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Refused on the announced length, before reading any of it.
        if super::announced_length(&req).is_some_and(|n| n > crate::config::MAX_MESSAGE_BYTES) {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError(tonic::Status::invalid_argument(rejection.body_text())).into_response()
            }
        })?;
        // An empty body is an empty object: every field is then defaulted
        // or named as missing.
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(Body).map_err(|e| {
            ApiError(tonic::Status::invalid_argument(format!(
                "invalid body: {e}"
            )))
            .into_response()
        })
    }
}

pub(crate) fn too_large() -> Response {
    let refusal = tonic::Status::resource_exhausted(format!(
        "the body is larger than the limit of {} bytes",
        crate::config::MAX_MESSAGE_BYTES
    ));
    let mut response = ApiError(refusal).into_response();
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

/// Path parameters whose rejection answers like every other refusal.
pub(crate) struct Segments<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Segments(v))
            .map_err(|e| {
                ApiError(tonic::Status::invalid_argument(format!(
                    "invalid path: {}",
                    e.body_text()
                )))
            })
    }
}

/// Query parameters whose rejection answers like every other refusal.
pub(crate) struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| {
                ApiError(tonic::Status::invalid_argument(format!(
                    "invalid query: {}",
                    e.body_text()
                )))
            })
    }
}

/// `message` as a request from `caller`, with the deadline the client
/// asked for.
fn grpc<T>(message: T, caller: Caller, headers: &HeaderMap) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.extensions_mut().insert(caller);
    if let Some(timeout) = requested_timeout(headers) {
        r.set_timeout(timeout);
    }
    r
}

/// The deadline the timeout header asks for; as for gRPC's own header, less
/// time than the default, never more.
fn requested_timeout(headers: &HeaderMap) -> Option<Duration> {
    let ms = headers
        .get(TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    Some(Duration::from_millis(ms).min(mnemo_router::router::DEFAULT_DEADLINE))
}

/// Durability a write waits for.
#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ack {
    /// Durable on the primary (the default).
    #[default]
    Primary,
    /// Durable on a majority of the space's holders.
    Quorum,
}

impl Ack {
    fn wire(self) -> i32 {
        match self {
            Ack::Primary => v1::Ack::Primary as i32,
            Ack::Quorum => v1::Ack::Quorum as i32,
        }
    }
}

/// A memory to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RememberBody {
    /// The text (1 byte to 64 KiB).
    content: String,
    /// Its id; absent: the node makes one (UUIDv7). Writes are idempotent by
    /// id, so a retried write with an id stays one write.
    id: Option<String>,
    /// In [0, 1]; absent: 1.
    confidence: Option<f32>,
    /// Labels recall can filter on.
    #[serde(default)]
    tags: Vec<String>,
    /// The client's own embedding; absent: the node's lexical one.
    #[serde(default)]
    embedding: Vec<f32>,
    /// Durability to wait for.
    #[serde(default)]
    ack: Ack,
}

/// Memories to write into one space in one request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RememberBatchBody {
    /// The memories (1 to 1000), each as for a single write (without
    /// `ack`).
    memories: Vec<BatchItem>,
    /// Durability every memory waits for.
    #[serde(default)]
    ack: Ack,
}

/// One memory of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    /// The text (1 byte to 64 KiB).
    content: String,
    /// Its id; absent: the node makes one.
    id: Option<String>,
    /// In [0, 1]; absent: 1.
    confidence: Option<f32>,
    /// Labels recall can filter on.
    #[serde(default)]
    tags: Vec<String>,
    /// The client's own embedding; absent: the node's lexical one.
    #[serde(default)]
    embedding: Vec<f32>,
}

impl RememberBody {
    /// The memory, and the durability it waits for.
    fn split(self) -> (BatchItem, Ack) {
        let memory = BatchItem {
            content: self.content,
            id: self.id,
            confidence: self.confidence,
            tags: self.tags,
            embedding: self.embedding,
        };
        (memory, self.ack)
    }
}

impl BatchItem {
    /// The write of this memory into `space`; an id given empty is refused
    /// (left out, the node makes one).
    fn into_request(self, space: String, ack: Ack) -> Result<v1::RememberRequest, tonic::Status> {
        if self.id.as_deref() == Some("") {
            return Err(tonic::Status::invalid_argument(
                "invalid id: is empty; leave it out to have one made",
            ));
        }
        Ok(v1::RememberRequest {
            space,
            id: self.id.unwrap_or_default(),
            content: self.content,
            embedding: self.embedding,
            confidence: self.confidence,
            tags: self.tags,
            ack: ack.wire(),
        })
    }
}

/// Most memories in one batch.
const MAX_BATCH: usize = 1000;

/// What happened to each memory of a batch, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    results: Vec<BatchResult>,
}

/// One memory's outcome: written (or already there), or why not.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BatchResult {
    /// Acknowledged, as a single write's answer.
    Remembered(json::Remembered),
    /// Refused or failed, as a single write's refusal.
    Error(BatchError),
}

/// Why one memory of a batch was not written.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchError {
    /// The gRPC code's name, e.g. `INVALID_ARGUMENT`.
    code: &'static str,
    /// What to do about it.
    message: String,
    /// The HTTP status a single write would have been refused with.
    status: u16,
}

impl From<&tonic::Status> for BatchError {
    fn from(status: &tonic::Status) -> Self {
        let (code, http) = http_of(status.code());
        BatchError {
            code,
            message: status.message().to_owned(),
            status: http.as_u16(),
        }
    }
}

/// A cue to rank a space's memories against.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecallBody {
    /// Text cue.
    #[serde(default)]
    cue: String,
    /// Embedding cue (for spaces written with the client's embeddings).
    #[serde(default)]
    cue_embedding: Vec<f32>,
    /// How many (1..=1000; absent: 10).
    k: Option<u32>,
    /// Leave out memories below this confidence.
    min_confidence: Option<f32>,
    /// Only memories carrying every one of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Also return memories with no evidence of relevance, score 0.
    #[serde(default)]
    include_unmatched: bool,
}

/// One cue over several spaces.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    /// The spaces (1 to 256).
    spaces: Vec<String>,
    /// The cue, as for a recall.
    #[serde(flatten)]
    cue: RecallBody,
}

/// How to consolidate.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsolidateBody {
    /// Similarity of client embeddings at or above which memories whose
    /// texts do not conflict merge; absent: the node's (0.97).
    threshold: Option<f32>,
    /// Only show the plan; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Where a page of memories starts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// The previous page's `next_cursor`; absent: the first page.
    cursor: Option<String>,
    /// Memories per page, 1..=1000 (absent: 100).
    limit: Option<u32>,
}

/// Durability a forget waits for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AckParams {
    /// `primary` (the default) or `quorum`.
    ack: Option<Ack>,
}

/// A space: where it lives and how much it holds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SpaceInfo {
    /// Placement.
    #[serde(flatten)]
    placement: json::Located,
    /// Live memories, as the holder that answered counts them.
    memories: u64,
    /// Forgotten ids it keeps.
    forgotten: u64,
    /// The holder that counted.
    counted_by: String,
}

type Answer<T> = Result<Json<T>, ApiError>;

/// Write a memory into a space (routed to the space's primary).
#[utoipa::path(post, path = "/v1/spaces/{space}/memories", request_body = RememberBody,
    params(("space" = String, Path, description = "The space")),
    responses(
        (status = 201, description = "Written", body = json::Remembered),
        (status = 200, description = "Already there (same id)", body = json::Remembered),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "Failed", body = ErrorBody)))]
async fn remember(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    headers: HeaderMap,
    Body(b): Body<RememberBody>,
) -> Result<(StatusCode, Json<json::Remembered>), ApiError> {
    let (memory, ack) = b.split();
    let message = memory.into_request(space, ack)?;
    let r = svc
        .remember(grpc(message, caller.0, &headers))
        .await?
        .into_inner();
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json::Remembered::from(&r))))
}

/// Write many memories into a space in one request (at most 1000, and the
/// body at most 4 MiB). Each is handled exactly as a single write
/// (validated, routed to the space's primary, acknowledged at `ack`), up to
/// 64 at once, within one deadline for the whole batch, and answered on its
/// own: one refused memory does not stop the others. A batch that cannot be
/// read at all is refused whole.
#[utoipa::path(post, path = "/v1/spaces/{space}/memories:batch", request_body = RememberBatchBody,
    params(("space" = String, Path, description = "The space")),
    responses(
        (status = 200, description = "Each memory's outcome, in the order sent", body = BatchAnswer),
        (status = "4XX", description = "Refused whole", body = ErrorBody)))]
async fn remember_batch(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    headers: HeaderMap,
    Body(b): Body<RememberBatchBody>,
) -> Answer<BatchAnswer> {
    use futures_util::StreamExt as _;
    if b.memories.is_empty() || b.memories.len() > MAX_BATCH {
        return Err(ApiError(tonic::Status::invalid_argument(format!(
            "invalid memories: {} given; a batch holds 1..={MAX_BATCH}",
            b.memories.len()
        ))));
    }
    let ack = b.ack;
    let until = tokio::time::Instant::now()
        + requested_timeout(&headers).unwrap_or(mnemo_router::router::DEFAULT_DEADLINE);
    let results = futures_util::stream::iter(b.memories)
        .map(|m| {
            let svc = svc.clone();
            let request = m
                .into_request(space.clone(), ack)
                .map(|message| grpc(message, caller.0.clone(), &headers));
            async move {
                let answer = async {
                    let mut request = request?;
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(tonic::Status::deadline_exceeded(
                            "the batch's deadline passed before this memory was sent",
                        ));
                    }
                    request.set_timeout(left);
                    svc.remember(request).await
                };
                match answer.await {
                    Ok(r) => BatchResult::Remembered(json::Remembered::from(r.get_ref())),
                    Err(status) => BatchResult::Error(BatchError::from(&status)),
                }
            }
        })
        .buffered(crate::service::STREAM_IN_FLIGHT)
        .collect()
        .await;
    Ok(Json(BatchAnswer { results }))
}

/// A page of a space's memories in id order (for listing and export).
#[utoipa::path(get, path = "/v1/spaces/{space}/memories",
    params(("space" = String, Path, description = "The space"), PageParams),
    responses((status = 200, description = "A page", body = json::Page),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn list(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    Params(p): Params<PageParams>,
    headers: HeaderMap,
) -> Answer<json::Page> {
    let message = v1::ListRequest {
        space,
        cursor: p.cursor.unwrap_or_default(),
        limit: p.limit,
    };
    let r = svc
        .list(grpc(message, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Page::from(&r)))
}

/// One memory by id, or what consolidation merged it into.
#[utoipa::path(get, path = "/v1/spaces/{space}/memories/{id}",
    params(("space" = String, Path, description = "The space"),
        ("id" = String, Path, description = "The memory's id")),
    responses((status = 200, description = "Found", body = json::Got),
        (status = 404, description = "No such memory", body = ErrorBody),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn get_memory(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments((space, id)): Segments<(String, String)>,
    headers: HeaderMap,
) -> Answer<json::Got> {
    let r = svc
        .get(grpc(v1::GetRequest { space, id }, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Got::from(&r)))
}

/// Forget a memory (a tombstone; routed to the primary).
#[utoipa::path(delete, path = "/v1/spaces/{space}/memories/{id}",
    params(("space" = String, Path, description = "The space"),
        ("id" = String, Path, description = "The memory's id"), AckParams),
    responses((status = 200, description = "Forgotten", body = json::Forgot),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn forget(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments((space, id)): Segments<(String, String)>,
    Params(p): Params<AckParams>,
    headers: HeaderMap,
) -> Answer<json::Forgot> {
    let message = v1::ForgetRequest {
        space,
        id,
        ack: p.ack.unwrap_or_default().wire(),
    };
    let r = svc
        .forget(grpc(message, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Forgot::from(&r)))
}

fn recall_request(space: String, b: RecallBody) -> v1::RecallRequest {
    v1::RecallRequest {
        space,
        cue: b.cue,
        cue_embedding: b.cue_embedding,
        k: b.k,
        min_confidence: b.min_confidence,
        include_unmatched: b.include_unmatched,
        tags: b.tags,
    }
}

/// Rank a space's memories against a cue (the primary, replicas on failure).
#[utoipa::path(post, path = "/v1/spaces/{space}/recall", request_body = RecallBody,
    params(("space" = String, Path, description = "The space")),
    responses((status = 200, description = "Best first", body = json::Recalled),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "Failed", body = ErrorBody)))]
async fn recall(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    headers: HeaderMap,
    Body(b): Body<RecallBody>,
) -> Answer<json::Recalled> {
    let r = svc
        .recall(grpc(recall_request(space, b), caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Recalled::from(&r)))
}

/// Merge memories of a space that say the same thing (on its primary).
#[utoipa::path(post, path = "/v1/spaces/{space}/consolidate", request_body = ConsolidateBody,
    params(("space" = String, Path, description = "The space")),
    responses((status = 200, description = "Done, or planned", body = json::Consolidated),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn consolidate(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    headers: HeaderMap,
    Body(b): Body<ConsolidateBody>,
) -> Answer<json::Consolidated> {
    let message = v1::ConsolidateRequest {
        space,
        threshold: b.threshold,
        dry_run: b.dry_run,
    };
    let r = svc
        .consolidate(grpc(message, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Consolidated::from(&r)))
}

/// One cue over several spaces: the best memories over all, and which
/// spaces failed.
#[utoipa::path(post, path = "/v1/query", request_body = QueryBody,
    responses((status = 200, description = "Best first", body = json::Queried),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn query(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Body(b): Body<QueryBody>,
) -> Answer<json::Queried> {
    let c = b.cue;
    let message = v1::QueryRequest {
        spaces: b.spaces,
        cue: c.cue,
        cue_embedding: c.cue_embedding,
        k: c.k,
        min_confidence: c.min_confidence,
        include_unmatched: c.include_unmatched,
        tags: c.tags,
    };
    let r = svc
        .query(grpc(message, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::Queried::from(&r)))
}

/// Where a space lives and how many memories it holds.
#[utoipa::path(get, path = "/v1/spaces/{space}",
    params(("space" = String, Path, description = "The space")),
    responses((status = 200, description = "Placement and counts", body = SpaceInfo),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn space(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    Segments(space): Segments<String>,
    headers: HeaderMap,
) -> Answer<SpaceInfo> {
    let located = svc
        .locate(grpc(
            v1::LocateRequest {
                space: space.clone(),
            },
            caller.0.clone(),
            &headers,
        ))
        .await?
        .into_inner();
    let page = v1::ListRequest {
        space,
        cursor: String::new(),
        limit: Some(1),
    };
    let counted = svc.list(grpc(page, caller.0, &headers)).await?.into_inner();
    Ok(Json(SpaceInfo {
        placement: json::Located::from(&located),
        memories: counted.total_memories,
        forgotten: counted.total_forgotten,
        counted_by: counted.served_by,
    }))
}

/// What this node sees (as `mnemo status --json`); needs a client
/// certificate.
#[utoipa::path(get, path = "/v1/status",
    responses((status = 200, description = "Members, partition, breakers, spaces, replication",
        body = Object),
        (status = "4XX", description = "Refused", body = ErrorBody)))]
async fn status(
    State(svc): State<MnemoService>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
) -> Answer<serde_json::Value> {
    let r = svc
        .status(grpc(v1::StatusRequest {}, caller.0, &headers))
        .await?
        .into_inner();
    Ok(Json(json::status(&r)))
}

#[derive(OpenApi)]
#[openapi(info(
    title = "mnemo",
    description = "Memory spaces for AI agents, over HTTP/JSON. Authenticate with a \
                   client certificate or `Authorization: Bearer <token>`."
))]
struct ApiDoc;

/// The `/v1` routes and the OpenAPI document describing exactly them.
pub(crate) fn routes(svc: MnemoService) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(remember, list))
        .routes(routes!(remember_batch))
        .routes(routes!(get_memory, forget))
        .routes(routes!(recall))
        .routes(routes!(consolidate))
        .routes(routes!(query))
        .routes(routes!(space))
        .routes(routes!(status))
        .with_state(svc)
        .split_for_parts();
    (router, doc)
}
