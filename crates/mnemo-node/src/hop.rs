//! The forwarded hop over one stream per peer.
//!
//! A public request that belongs on another node used to travel as a unary
//! gRPC call of its own: a new HTTP/2 stream, headers both ways and a task on
//! each side, which is most of what a hop costs. Here a node keeps one
//! `Internal.Hop` stream open to each peer it forwards to and sends
//! remembers, forgets, gets and recalls of up to 100 memories over it as
//! messages ([`v1::HopCall`]: an id, the operation, the request's bytes,
//! the time left, when it was sent and the caller's credentials); the peer
//! answers each as soon as it is served, in any order ([`v1::HopAnswer`],
//! matched by id). List pages and larger recalls, whose answers could hold
//! up the rest of the stream, still go as calls of their own.
//!
//! Nothing about what is served changes. The peer serves each call exactly
//! as a forwarded unary call (`MnemoService::handle_one` with
//! `forwarded`): the caller's token is checked again there, the request is
//! served from the peer's own copy or refused, never sent on. An answer
//! carries the status a unary call would have had, refusal marker included,
//! so the router classifies it the same way. A stream that breaks fails the
//! calls waiting on it as a broken connection would (a node fault), and the
//! next call opens a new one. A peer that does not know the stream
//! (`UNIMPLEMENTED`: an older version) is sent unary calls instead.
//!
//! Nothing resets a call its caller gave up on. So each call carries when
//! it was sent, and the receiver answers one whose time ran out on the way
//! (the backlog of a peer that stalled) without serving it; see
//! `Transit`. An answer over the message limit fails its call alone.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use mnemo_proto::v1;
use mnemo_router::error::REFUSAL_KEY;
use mnemo_router::router::DEFAULT_DEADLINE;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{AsciiMetadataValue, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use crate::calls::Routed;
use crate::config::MAX_MESSAGE_BYTES;
use crate::node::Node;
use crate::security::{Caller, Gate};
use crate::service::{MnemoService, Origin};
use crate::telemetry;

/// Most calls of one stream a node serves at once; beyond it the stream
/// waits (HTTP/2 flow control holds the sender back). Every call ends by
/// its deadline, abandoned or not.
const SERVED_AT_ONCE: usize = 1024;
/// What a `HopAnswer` adds around the answer it carries, at most.
const ENVELOPE_BYTES: usize = 256;
/// How long a peer that answered `UNIMPLEMENTED` gets unary calls before
/// the stream is tried again (it may have been upgraded meanwhile).
const UNARY_FOR: Duration = Duration::from_secs(60);
/// Calls queued for sending on one stream before senders wait.
const QUEUED: usize = 256;

/// The answers of a `Hop` stream, in the order they are ready.
pub(crate) type HopAnswers = Pin<Box<dyn Stream<Item = Result<v1::HopAnswer, Status>> + Send>>;

// ----- the serving side -------------------------------------------------

/// Serves the calls of a `Hop` stream a peer opened (it passed the internal
/// gate: a node). Once this node has left the cluster it takes no more
/// calls and ends the stream when those in hand are answered, so that its
/// server can close.
pub(crate) fn serve(node: Arc<Node>, request: Request<Streaming<v1::HopCall>>) -> HopAnswers {
    let leaf =
        crate::places::peer_certs(request.extensions()).and_then(|certs| certs.first().cloned());
    let gate = Gate::new(node.config.security.clone());
    let left = node.has_left();
    let service = MnemoService::new(node);
    let mut transit = Transit::new();
    let answers = request
        .into_inner()
        .take_until(left)
        .map(move |call| {
            let (service, gate, leaf) = (service.clone(), gate.clone(), leaf.clone());
            // Taken when the call is taken up: what it waited, on the way
            // and here, counts against its time.
            let left = call.as_ref().ok().map(|c| transit.time_left(c));
            async move {
                // A message that cannot be decoded ends the stream.
                let mut call = call?;
                let id = call.id;
                let served = if let Some(left) = left.flatten() {
                    call.timeout_us = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
                    served(&service, &gate, leaf.as_ref(), call).await
                } else {
                    let late = Status::deadline_exceeded(
                        "the caller's time ran out before the forwarded call got here",
                    );
                    if let Some(operation) = operation(&call.operation) {
                        telemetry::request(
                            "public",
                            operation,
                            "serve",
                            late.code(),
                            Instant::now(),
                        );
                    }
                    Err(late)
                };
                let answer = match served {
                    Ok(answer) => v1::HopAnswer {
                        id,
                        answer,
                        ..Default::default()
                    },
                    Err(status) => v1::HopAnswer {
                        id,
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                        refusal: status
                            .metadata()
                            .get(REFUSAL_KEY)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        answer: Vec::new(),
                    },
                };
                Ok(answer)
            }
        })
        .buffer_unordered(SERVED_AT_ONCE);
    Box::pin(answers)
}

/// The receiving end's view of one stream's clock. Sender and receiver
/// clocks are not comparable, but their difference is: the least
/// `arrived - sent` seen is the way's own latency (plus the clocks'
/// offset), and what a call took beyond it, it waited.
///
/// Two clocks also drift apart (tens of parts per million without NTP),
/// which on a stream open for days would make every call look late. So the
/// least may rise again, by at most [`DRIFT_ALLOWED`] of the time between
/// calls: far more than clocks drift, far less than a stall.
struct Transit {
    opened: Instant,
    /// The least `arrived - sent` so far (as allowed to rise), and when it
    /// was last taken, in microseconds of this end's clock.
    fastest: Option<(i128, i128)>,
}

/// How fast the least transit time may rise: 1 ms a second.
const DRIFT_ALLOWED: i128 = 1000;

impl Transit {
    fn new() -> Self {
        Transit {
            opened: Instant::now(),
            fastest: None,
        }
    }

    /// The time `call` has left now; `None` if it ran out on the way.
    fn time_left(&mut self, call: &v1::HopCall) -> Option<Duration> {
        self.left_at(self.opened.elapsed(), call.sent_us, call.timeout_us)
    }

    fn left_at(&mut self, arrived: Duration, sent_us: u64, timeout_us: u64) -> Option<Duration> {
        let arrived = i128::try_from(arrived.as_micros()).unwrap_or(i128::MAX);
        let took = arrived - i128::from(sent_us);
        let fastest = match self.fastest {
            None => took,
            Some((fastest, at)) => took.min(fastest + (arrived - at) / DRIFT_ALLOWED),
        };
        self.fastest = Some((fastest, arrived));
        let waited = u64::try_from(took - fastest).unwrap_or(u64::MAX);
        let left = timeout_us.checked_sub(waited).filter(|l| *l > 0)?;
        Some(Duration::from_micros(left))
    }
}

/// One call, timed as a forwarded call served here.
async fn served(
    service: &MnemoService,
    gate: &Gate,
    leaf: Option<&rustls_pki_types::CertificateDer<'static>>,
    call: v1::HopCall,
) -> Result<Vec<u8>, Status> {
    let started = Instant::now();
    let operation = operation(&call.operation);
    let answer = match operation {
        Some(operation) => in_time(service, gate, leaf, operation, call).await,
        None => Err(Status::invalid_argument(format!(
            "invalid operation: {:?} is not remember, forget, recall or get",
            call.operation
        ))),
    };
    if let Some(operation) = operation {
        let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
        telemetry::request("public", operation, "serve", code, started);
    }
    answer
}

/// The operations a hop stream carries, by name.
fn operation(name: &str) -> Option<&'static str> {
    [
        v1::RememberRequest::OPERATION,
        v1::ForgetRequest::OPERATION,
        v1::RecallRequest::OPERATION,
        v1::GetRequest::OPERATION,
    ]
    .into_iter()
    .find(|op| *op == name)
}

/// One call within the time its caller had left, as a unary call's
/// `grpc-timeout` bounded it here.
async fn in_time(
    service: &MnemoService,
    gate: &Gate,
    leaf: Option<&rustls_pki_types::CertificateDer<'static>>,
    operation: &'static str,
    call: v1::HopCall,
) -> Result<Vec<u8>, Status> {
    let authorization = if call.authorization.is_empty() {
        None
    } else {
        Some(
            AsciiMetadataValue::try_from(call.authorization.as_str()).map_err(|_| {
                Status::unauthenticated("the authorization header is not \"Bearer <token>\"")
            })?,
        )
    };
    let caller = gate.caller(leaf, authorization.as_ref())?;
    let timeout = Duration::from_micros(call.timeout_us).min(DEFAULT_DEADLINE);
    let bytes = call.request.as_slice();
    let from = |operation| Origin {
        operation,
        caller,
        forwarded: true,
        fallback: call.fallback,
        deadline: Some(timeout),
    };
    let answer = async {
        if operation == v1::RememberRequest::OPERATION {
            one::<v1::RememberRequest>(service, from(operation), bytes).await
        } else if operation == v1::ForgetRequest::OPERATION {
            one::<v1::ForgetRequest>(service, from(operation), bytes).await
        } else if operation == v1::RecallRequest::OPERATION {
            one::<v1::RecallRequest>(service, from(operation), bytes).await
        } else {
            one::<v1::GetRequest>(service, from(operation), bytes).await
        }
    };
    let answer = tokio::time::timeout(timeout, answer).await.map_err(|_| {
        Status::deadline_exceeded("the caller's deadline passed while it was served")
    })??;
    // Over the limit, this answer alone fails, as it would have as a call
    // of its own: sent, it would end the stream and every call on it.
    if answer.len() + ENVELOPE_BYTES > MAX_MESSAGE_BYTES {
        return Err(Status::resource_exhausted(format!(
            "the answer is {} bytes, over the {MAX_MESSAGE_BYTES}-byte message limit; \
             ask for fewer memories",
            answer.len()
        )));
    }
    Ok(answer)
}

async fn one<Q: Routed>(
    service: &MnemoService,
    from: Origin,
    bytes: &[u8],
) -> Result<Vec<u8>, Status> {
    let request = Q::decode(bytes)
        .map_err(|e| Status::invalid_argument(format!("invalid {} request: {e}", Q::OPERATION)))?;
    Ok(service.handle_one(&from, request).await?.encode_to_vec())
}

// ----- the forwarding side -----------------------------------------------

/// This node's streams to its peers: one set per serving thread (see
/// `crate::serving`), each on connections of its own, so that a forward
/// and its answer stay on the thread that serves the request; and one set
/// for calls made anywhere else (the HTTP API), on the pool's channels.
pub struct Hops {
    sets: Box<[Links]>,
    router: Arc<mnemo_router::Router>,
}

impl Hops {
    /// Sets for `threads` serving threads and the rest; links dial through
    /// `router`'s pool.
    pub fn new(threads: usize, router: Arc<mnemo_router::Router>) -> Self {
        Hops {
            sets: (0..=threads).map(|_| Links::default()).collect(),
            router,
        }
    }

    /// Sends `request` to `node` over the stream of the thread this runs
    /// on, with `timeout` left, on behalf of `caller`, marked as sent in
    /// the primary's place if `fallback`. `None`: send it as a unary call
    /// instead (the peer has no stream, or the caller's credentials are
    /// not text).
    pub(crate) async fn call<Q: Routed>(
        &self,
        node: &str,
        channel: &Channel,
        request: &Q,
        caller: &Caller,
        (timeout, fallback): (Duration, bool),
    ) -> Option<Result<Q::Answer, Status>> {
        let thread = crate::serving::current();
        let links = self.sets.get(thread)?;
        let dial = || {
            if thread == 0 {
                Some(channel.clone())
            } else {
                crate::node::dedicated_channel_to(&self.router, node)
            }
        };
        links
            .call(node, dial, request, caller, (timeout, fallback))
            .await
    }

    /// Forgets a peer that left: its links close once their calls are done.
    pub fn forget_peer(&self, node: &str) {
        for links in &self.sets {
            links.forget_peer(node);
        }
    }
}

/// One thread's streams to its peers, by peer id.
#[derive(Default)]
struct Links {
    peers: Mutex<HashMap<String, Peer>>,
}

enum Peer {
    Open(Arc<Link>),
    /// The peer answered `UNIMPLEMENTED` (it has no `Hop`): it gets unary
    /// calls until then.
    Unary(Instant),
}

impl Links {
    /// Sends `request` to `node` over its stream (opened on the channel
    /// `dial` gives if there is none), as [`Hops::call`].
    async fn call<Q: Routed>(
        &self,
        node: &str,
        dial: impl FnOnce() -> Option<Channel>,
        request: &Q,
        caller: &Caller,
        (timeout, fallback): (Duration, bool),
    ) -> Option<Result<Q::Answer, Status>> {
        // A header that is not text goes as it came, on a unary call: the
        // peer then decides, never a stream call without it.
        let authorization = caller.authorization_text().ok()?.unwrap_or_default();
        let link = self.link(node, dial)?;
        let call = v1::HopCall {
            id: 0,         // set by the link
            timeout_us: 0, // set when sent
            sent_us: 0,    // set when sent
            operation: Q::OPERATION.to_owned(),
            request: request.encode_to_vec(),
            authorization: authorization.to_owned(),
            fallback,
        };
        let answer = match link.call(call, Instant::now() + timeout).await {
            Ok(answer) => answer,
            Err(Broken::Unimplemented) => {
                self.replace(node, &link, Some(Peer::Unary(Instant::now() + UNARY_FOR)));
                return None;
            }
            Err(Broken::Status(status)) => {
                // Dropped, so that the next call opens a new one.
                self.replace(node, &link, None);
                return Some(Err(status));
            }
        };
        Some(if answer.code == Code::Ok as i32 {
            Q::Answer::decode(answer.answer.as_slice())
                .map_err(|e| Status::internal(format!("undecodable answer from {node}: {e}")))
        } else {
            Err(status_of(answer))
        })
    }

    /// The open link to `node`, opened on the channel `dial` gives if
    /// there is none.
    fn link(&self, node: &str, dial: impl FnOnce() -> Option<Channel>) -> Option<Arc<Link>> {
        let mut peers = self.peers.lock().expect("lock poisoned");
        match peers.get(node) {
            Some(Peer::Unary(until)) if Instant::now() < *until => None,
            Some(Peer::Open(link)) if !link.is_broken() => Some(Arc::clone(link)),
            _ => {
                let link = Link::open(node, dial()?);
                peers.insert(node.to_owned(), Peer::Open(Arc::clone(&link)));
                Some(link)
            }
        }
    }

    /// Replaces `link`, if it is still the one in use, with `with` (or
    /// nothing).
    fn replace(&self, node: &str, link: &Arc<Link>, with: Option<Peer>) {
        let mut peers = self.peers.lock().expect("lock poisoned");
        if matches!(peers.get(node), Some(Peer::Open(l)) if Arc::ptr_eq(l, link)) {
            match with {
                Some(peer) => peers.insert(node.to_owned(), peer),
                None => peers.remove(node),
            };
        }
    }

    fn forget_peer(&self, node: &str) {
        self.peers.lock().expect("lock poisoned").remove(node);
    }
}

/// A unary call's status from an answer: the same code and message, and
/// the refusal marker, so the router classifies it as it would the unary
/// answer.
fn status_of(answer: v1::HopAnswer) -> Status {
    let code = Code::from(answer.code);
    if answer.refusal.is_empty() {
        return Status::new(code, answer.message);
    }
    let mut metadata = MetadataMap::new();
    if let Ok(kind) = MetadataValue::try_from(answer.refusal.as_str()) {
        metadata.insert(REFUSAL_KEY, kind);
    }
    Status::with_metadata(code, answer.message, metadata)
}

/// Why a call got no answer on its stream.
enum Broken {
    /// The peer does not serve `Hop`.
    Unimplemented,
    /// The stream failed (as a connection that broke: a node fault).
    Status(Status),
}

/// One open stream to a peer: calls go out through `outbox`; a task reads
/// the answers and hands each to the call waiting for it. Dropping the
/// link (no call left using it, and no longer in [`Hops`]) ends the
/// stream: the task holds the waiting calls, not the outbox.
struct Link {
    node: String,
    /// When the stream was opened: calls' send times count from here.
    opened: Instant,
    outbox: mpsc::Sender<v1::HopCall>,
    waiting: Arc<Mutex<Waiting>>,
    next: AtomicU64,
}

/// The calls waiting for an answer; once the stream has ended, why.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, oneshot::Sender<v1::HopAnswer>>,
    ended: Option<Ended>,
}

#[derive(Clone)]
enum Ended {
    Unimplemented,
    Failed(String),
}

impl Link {
    fn open(node: &str, channel: Channel) -> Arc<Link> {
        let (outbox, calls) = mpsc::channel(QUEUED);
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        tokio::spawn(read(channel, calls, Arc::clone(&waiting)));
        Arc::new(Link {
            node: node.to_owned(),
            opened: Instant::now(),
            outbox,
            waiting,
            next: AtomicU64::new(0),
        })
    }

    fn is_broken(&self) -> bool {
        self.waiting.lock().expect("lock poisoned").ended.is_some()
    }

    /// Sends `call` and waits for its answer. Its time left is counted
    /// when it is sent, from `deadline`.
    async fn call(
        &self,
        mut call: v1::HopCall,
        deadline: Instant,
    ) -> Result<v1::HopAnswer, Broken> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        call.id = id;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().expect("lock poisoned");
            if let Some(ended) = &waiting.ended {
                return Err(self.broken(ended.clone()));
            }
            waiting.calls.insert(id, tx);
        }
        // Taken out again however this call ends (answered, failed, or
        // dropped by its caller's timeout).
        let _waiting = Forget { link: self, id };
        let Ok(slot) = self.outbox.reserve().await else {
            return Err(self.ended());
        };
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        call.timeout_us = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
        call.sent_us =
            u64::try_from(now.duration_since(self.opened).as_micros()).unwrap_or(u64::MAX);
        slot.send(call);
        match rx.await {
            Ok(answer) => Ok(answer),
            Err(_) => Err(self.ended()),
        }
    }

    /// Why the ended stream failed its calls.
    fn ended(&self) -> Broken {
        let ended = self.waiting.lock().expect("lock poisoned").ended.clone();
        self.broken(ended.unwrap_or_else(|| Ended::Failed("the stream closed".into())))
    }

    fn broken(&self, ended: Ended) -> Broken {
        match ended {
            Ended::Unimplemented => Broken::Unimplemented,
            Ended::Failed(why) => Broken::Status(Status::unavailable(format!(
                "the hop stream to {} broke: {why}",
                self.node
            ))),
        }
    }
}

/// Opens the stream and hands out answers until it ends; then fails every
/// call still waiting.
async fn read(channel: Channel, calls: mpsc::Receiver<v1::HopCall>, waiting: Arc<Mutex<Waiting>>) {
    let mut client = crate::forward::internal_client(channel);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(calls);
    let ended = match client.hop(outbound).await {
        Err(status) if status.code() == Code::Unimplemented => Ended::Unimplemented,
        Err(status) => Ended::Failed(status.message().to_owned()),
        Ok(answers) => {
            let mut answers = answers.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => {
                        let call = waiting
                            .lock()
                            .expect("lock poisoned")
                            .calls
                            .remove(&answer.id);
                        if let Some(call) = call {
                            let _ = call.send(answer);
                        }
                    }
                    Ok(None) => break Ended::Failed("the peer ended the stream".into()),
                    Err(status) => break Ended::Failed(status.message().to_owned()),
                }
            }
        }
    };
    let mut waiting = waiting.lock().expect("lock poisoned");
    waiting.ended = Some(ended);
    // Dropping the senders wakes every waiting call.
    waiting.calls.clear();
}

/// Removes a call from the waiting ones when it ends, answered or not.
struct Forget<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.link
            .waiting
            .lock()
            .expect("lock poisoned")
            .calls
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_call_keeps_its_time_when_it_comes_as_fast_as_any() {
        let mut t = Transit::new();
        // The clocks are 500 ms apart; the way takes 1 ms.
        assert_eq!(t.left_at(at(501), 0, 100 * MS), Some(at(100)));
        assert_eq!(t.left_at(at(1_501), 1_000 * MS, 100 * MS), Some(at(100)));
    }

    #[test]
    fn what_a_call_waited_on_the_way_counts_against_it() {
        let mut t = Transit::new();
        assert_eq!(t.left_at(at(501), 0, 100 * MS), Some(at(100)));
        // Sent at 10 ms, taken up 30 ms later than the way takes.
        // (Less the 0.04 ms the least may have risen in 40 ms.)
        assert_eq!(
            t.left_at(at(541), 10 * MS, 100 * MS),
            Some(Duration::from_micros(70_040))
        );
        // A backlog behind a stalled receiver: sent long before its time
        // ran out, taken up after.
        assert_eq!(t.left_at(at(10_501), 20 * MS, 100 * MS), None);
    }

    #[test]
    fn clocks_drifting_apart_do_not_make_calls_late() {
        let mut t = Transit::new();
        // The sender's clock runs 100 parts per million slow: over a day
        // it falls 8.6 s behind. A call a second, each with 100 ms.
        for second in 0..86_400u64 {
            let sent = second * 1_000_000 - second * 100;
            let left = t.left_at(Duration::from_secs(second) + at(1), sent, 100 * MS);
            assert!(left.is_some_and(|l| l >= at(99)), "{second}: {left:?}");
        }
        // And a call held up a second on the way still shows: sent at the
        // sender's second 86 400, taken up a second later than the way
        // takes.
        let sent = 86_400 * 1_000_000 - 86_400 * 100;
        let arrived = Duration::from_secs(86_401) + at(1);
        assert_eq!(t.left_at(arrived, sent, 100 * MS), None);
    }

    #[test]
    fn a_faster_call_later_sets_what_the_way_takes() {
        let mut t = Transit::new();
        // The first call itself waited 50 ms: it cannot know that.
        assert_eq!(t.left_at(at(551), 0, 100 * MS), Some(at(100)));
        assert_eq!(t.left_at(at(601), 100 * MS, 100 * MS), Some(at(100)));
        // (The least may have risen by 0.1 ms in the 101 ms since.)
        assert_eq!(
            t.left_at(at(702), 200 * MS, 100 * MS),
            Some(Duration::from_micros(99_101))
        );
    }
}
