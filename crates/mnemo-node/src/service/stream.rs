//! `RememberStream`: many remembers over one stream. Every request in it
//! goes through the same skeleton as a unary `Remember`
//! ([`MnemoService::handle_one`]): checks, then routed to the space's
//! primary (or the next holder), acknowledged at its own `ack`.
//!
//! What the stream saves is the transport's cost per call (a new HTTP/2
//! stream, headers both ways, the server's task per call): a client that
//! writes one memory after another pays it once. Up to [`IN_FLIGHT`]
//! requests are handled at once, so a client may also send without waiting;
//! answers come back in the order sent, each with its position. A request
//! that fails is answered with its error and the stream goes on. What ends
//! the stream, with its error, after the answers to what came before: a
//! message that cannot be decoded (malformed: `INTERNAL`; over the size
//! limit: `RESOURCE_EXHAUSTED`), the stream's own deadline passing, and the
//! caller's token expiring while the stream is open.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use mnemo_proto::v1::{self, remember_stream_response::Outcome};
use mnemo_router::router::DEFAULT_DEADLINE;
use tokio::time::Instant;
use tonic::{Code, Request, Status, Streaming};

use super::{MnemoService, Origin};
use crate::security::Caller;
use crate::{forward, limits, telemetry};

/// Most requests of one stream handled at once.
pub(crate) const IN_FLIGHT: usize = 64;

/// The answers of a `RememberStream`, in the order of its requests.
pub(crate) type RememberAnswers =
    Pin<Box<dyn Stream<Item = Result<v1::RememberStreamResponse, Status>> + Send>>;

/// Serves the requests of `request`'s stream through `service`.
pub(super) fn remember(
    service: MnemoService,
    request: Request<Streaming<v1::RememberRequest>>,
) -> RememberAnswers {
    let caller = Caller::of(&request);
    // The stream's own deadline bounds every request in it; an absurd
    // value means none.
    let until = forward::requested(&request).and_then(|d| Instant::now().checked_add(d));
    // Once the node has left, it takes no more requests: the stream ends
    // when those in hand are answered, so that the server can close.
    let answers = request
        .into_inner()
        .take_until(service.node.has_left())
        .enumerate()
        .map(move |(seq, message)| {
            let (service, caller) = (service.clone(), caller.clone());
            async move {
                let r = message.map_err(limits::resource_exhausted)?;
                // What ends the whole call ends the stream: its deadline,
                // and a token that expired while it was open.
                let left = until.map(|u| u.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    return Err(Status::deadline_exceeded(format!(
                        "the stream's deadline passed before request {seq}"
                    )));
                }
                caller.still_valid()?;
                let from = Origin {
                    operation: "remember",
                    caller,
                    // Nodes forward single calls, never streams.
                    forwarded: false,
                    fallback: false,
                    deadline: Some(left.map_or(DEFAULT_DEADLINE, |l| l.min(DEFAULT_DEADLINE))),
                };
                let started = std::time::Instant::now();
                let answer = service.handle_one(&from, r).await;
                let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
                // Timed as the remember it is (the stream itself is not).
                telemetry::request("public", "remember", "edge", code, started);
                let outcome = match answer {
                    Ok(remembered) => Outcome::Remembered(remembered),
                    Err(status) => Outcome::Error(v1::StreamError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                };
                Ok(v1::RememberStreamResponse {
                    seq: seq as u64,
                    outcome: Some(outcome),
                })
            }
        })
        .buffered(IN_FLIGHT);
    Box::pin(answers)
}
