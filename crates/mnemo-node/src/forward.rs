//! Forwarding: how a request that this node should not serve reaches the
//! node that should, and how a forwarded request is recognised.
//!
//! A forwarded request carries `mnemo-forwarded-by: <node id>`. Its receiver
//! never forwards it again, whatever its own view says: two nodes whose
//! views of a space differ answer instead of bouncing the request between
//! them.

use std::time::Duration;

use mnemo_proto::FORWARDED_BY;
use mnemo_proto::v1::internal_client::InternalClient;
use mnemo_proto::v1::mnemo_client::MnemoClient;
use mnemo_router::{ExecError, RouterError};
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::config::MAX_MESSAGE_BYTES;
use crate::security::Caller;

/// True when `request` was forwarded by another node.
pub(crate) fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_BY)
}

/// The deadline the caller set (the `grpc-timeout` header), if any, capped
/// at the default: a client may ask for less time, never more (and an
/// absurd value must not overflow an `Instant`).
pub(crate) fn deadline<T>(request: &Request<T>) -> Option<Duration> {
    requested(request).map(|d| d.min(mnemo_router::router::DEFAULT_DEADLINE))
}

fn requested<T>(request: &Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A client for `channel` whose requests are marked as forwarded by `from`.
pub(crate) fn client(channel: Channel) -> MnemoClient<Channel> {
    MnemoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A node-to-node client for `channel`, with the same message limits.
pub(crate) fn internal_client(channel: Channel) -> InternalClient<Channel> {
    InternalClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// `message` as a forwarded request from node `from` on behalf of
/// `caller`, with `timeout` left.
pub(crate) fn request<T>(message: T, from: &str, caller: &Caller, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    caller.pass_on(request.metadata_mut());
    if let Ok(v) = from.parse() {
        request.metadata_mut().insert(FORWARDED_BY, v);
    }
    request
}

/// The status a client sees when routing gave up.
pub(crate) fn exec_status(e: ExecError<Status>) -> Status {
    match e {
        ExecError::Operation(status) => status,
        ExecError::Router { error, last } => {
            let base = Status::from(error);
            match last {
                Some(last) => Status::new(
                    base.code(),
                    format!("{}; last error: {}", base.message(), last.message()),
                ),
                None => base,
            }
        }
    }
}

/// The status for a routing error raised before any attempt.
pub(crate) fn route_status(e: RouterError) -> Status {
    Status::from(e)
}
