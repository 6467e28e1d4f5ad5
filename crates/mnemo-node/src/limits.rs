//! Messages over the size limit are refused with `RESOURCE_EXHAUSTED`, the
//! code gRPC gives for a message too large, where the transport's own
//! decoder says `OUT_OF_RANGE`.

use tonic::codegen::http::{HeaderValue, Response};

/// The layer that rewrites the transport's "message too large" status.
pub(crate) fn resource_exhausted_layer()
-> tower::util::MapResponseLayer<fn(Response<tonic::body::Body>) -> Response<tonic::body::Body>> {
    tower::util::MapResponseLayer::new(over_limit)
}

/// A refusal of an oversized message (`OUT_OF_RANGE` and the decoder's
/// words, in the headers of a trailers-only answer) becomes
/// `RESOURCE_EXHAUSTED`; anything else passes untouched. The handlers
/// never answer `OUT_OF_RANGE` themselves.
fn over_limit(mut response: Response<tonic::body::Body>) -> Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let oversized = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| is_too_large(m) || m.contains("length%20too%20large"));
    if oversized {
        let code = tonic::Code::ResourceExhausted as i32;
        headers.insert("grpc-status", HeaderValue::from(code));
    }
    response
}

/// The decoder's words for a message over the limit.
fn is_too_large(message: &str) -> bool {
    message.contains("length too large")
}

/// The same rewrite for a message of a stream, whose refusal comes after
/// the answers to earlier messages (in trailers the layer does not see).
pub(crate) fn resource_exhausted(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::OutOfRange && is_too_large(status.message()) {
        tonic::Status::resource_exhausted(status.message())
    } else {
        status
    }
}
