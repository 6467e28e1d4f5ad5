//! Route or forward: how a request that this node should not serve reaches
//! the node that should (the router's executor runs each attempt, here or
//! on a peer), and how a forwarded request is recognised. Serving a
//! request another node forwarded is `MnemoService::serve_forwarded`.
//!
//! A forwarded request carries `mnemo-forwarded-by: <node id>`. Its receiver
//! never forwards it again, whatever its own view says: two nodes whose
//! views of a space differ answer instead of bouncing the request between
//! them.

use std::future::Future;
use std::time::Duration;

use mnemo_proto::FORWARDED_BY;
use mnemo_proto::v1::internal_client::InternalClient;
use mnemo_proto::v1::mnemo_client::MnemoClient;
use mnemo_router::topology::NodeId;
use mnemo_router::{ExecError, Router, RouterError, RoutingDecision, Served, Target};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::calls::Routed;
use crate::config::MAX_MESSAGE_BYTES;
use crate::hop::Hops;
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

pub(crate) fn requested<T>(request: &Request<T>) -> Option<Duration> {
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
/// `caller`, with `timeout` left; marked as sent in the primary's place if
/// `fallback`.
pub(crate) fn request<T>(
    message: T,
    from: &str,
    caller: &Caller,
    timeout: Duration,
    fallback: bool,
) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    caller.pass_on(request.metadata_mut());
    if let Ok(v) = from.parse() {
        request.metadata_mut().insert(FORWARDED_BY, v);
    }
    if fallback {
        request.metadata_mut().insert(
            mnemo_proto::FALLBACK,
            tonic::metadata::MetadataValue::from_static("1"),
        );
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

/// Who a forwarded request comes from: this node, on behalf of `caller`.
#[derive(Clone, Copy)]
pub(crate) struct Hop<'a> {
    pub(crate) from: &'a str,
    pub(crate) caller: &'a Caller,
    /// The operation's name, for metrics.
    pub(crate) operation: &'static str,
    /// This node's hop streams to its peers.
    pub(crate) hops: &'a Hops,
}

/// The peer one attempt goes to: how to reach it, with how much time, and
/// whether in the primary's place.
pub(crate) struct Peer<'a> {
    node: NodeId,
    channel: Channel,
    timeout: Duration,
    fallback: bool,
    hop: Hop<'a>,
}

impl Peer<'_> {
    /// Sends `request` over the peer's hop stream when the call travels
    /// there and the peer has one; else as a unary call of its own (marked
    /// as forwarded, with the caller's credentials and the time left).
    pub(crate) async fn send<Q: Routed>(self, request: Q) -> Result<Q::Answer, Status> {
        if request.over_hop() {
            let hops = self.hop.hops;
            let sent = hops.call(
                self.node.as_str(),
                &self.channel,
                &request,
                self.hop.caller,
                (self.timeout, self.fallback),
            );
            // Boxed, as is the unary call below: both are large, and this
            // future lives inside every routed call's.
            if let Some(answer) = Box::pin(sent).await {
                return answer;
            }
        }
        let request = self::request(
            request,
            self.hop.from,
            self.hop.caller,
            self.timeout,
            self.fallback,
        );
        Box::pin(Q::call(client(self.channel), request))
            .await
            .map(Response::into_inner)
    }
}

/// Whether an attempt at `target` (from node `here`) answers in the place
/// of `placed_primary`: the space's primary as placed over every member
/// that has not left, which the live view's decision no longer names once
/// it is down. `None` (writes): never.
pub(crate) fn in_primarys_place(
    placed_primary: Option<&NodeId>,
    target: &Target,
    here: &str,
) -> bool {
    let to = target.node().map_or(here, NodeId::as_str);
    placed_primary.is_some_and(|p| p.as_str() != to)
}

/// Runs `request` where `decision` says, within `deadline`: `local` on this
/// node, or `remote` (a generated client call) on a peer, through the
/// router's executor (breakers, fallback, retries, hedging). Each attempt
/// is told whether it answers in `placed_primary`'s place
/// ([`in_primarys_place`]).
pub(crate) async fn run<'h, Q, A, L, LF, R, RF>(
    router: &Router,
    (decision, placed_primary): (&RoutingDecision, Option<&NodeId>),
    deadline: Option<Duration>,
    request: &Q,
    hop: Hop<'h>,
    local: L,
    remote: R,
) -> Result<Served<A>, Status>
where
    Q: Clone,
    L: Fn(Q, bool) -> LF,
    LF: Future<Output = Result<A, Status>>,
    R: Fn(Peer<'h>, Q) -> RF,
    RF: Future<Output = Result<A, Status>>,
{
    let (local, remote) = (&local, &remote);
    router
        .execute(decision, deadline, |target| {
            let fallback = in_primarys_place(placed_primary, &target, hop.from);
            dispatch(target, request.clone(), hop, fallback, local, remote)
        })
        .await
        .map_err(exec_status)
}

/// Runs one attempt at `target`: `local` on this node, or `remote` on a
/// peer (usually [`Peer::send`]), given the time left of the deadline and
/// whether it is in the primary's place.
pub(crate) async fn dispatch<'h, Q, A, L, LF, R, RF>(
    target: Target,
    request: Q,
    hop: Hop<'h>,
    fallback: bool,
    local: L,
    remote: R,
) -> Result<A, Status>
where
    L: FnOnce(Q, bool) -> LF,
    LF: Future<Output = Result<A, Status>>,
    R: FnOnce(Peer<'h>, Q) -> RF,
    RF: Future<Output = Result<A, Status>>,
{
    match target {
        Target::Local => local(request, fallback).await,
        Target::Remote {
            node,
            channel,
            timeout,
        } => {
            let started = std::time::Instant::now();
            let peer = Peer {
                node,
                channel,
                timeout,
                fallback,
                hop,
            };
            let answer = remote(peer, request).await;
            let code = answer
                .as_ref()
                .map_or_else(Status::code, |_| tonic::Code::Ok);
            crate::telemetry::request("public", hop.operation, "forward", code, started);
            answer
        }
    }
}
