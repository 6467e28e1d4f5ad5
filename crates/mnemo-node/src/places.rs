//! The node's connection places: at most `NodeConfig::max_connections`
//! connections open on its gRPC and HTTP ports together.
//!
//! Every connection holds a file descriptor, and a node out of them can
//! neither accept, nor open its files, nor dial its peers. So a connection
//! over the limit is closed as soon as it is accepted (counted in
//! `mnemo_connections_refused_total`, logged at most every 10 s), and one
//! within it holds its place until it closes ([`Held`]). The last
//! [`MEMBERS_SHARE`]th of the places go to connections from cluster
//! members' addresses only: clients that fill the rest cannot lock peers
//! out of forwarding and replicating to the node.
//!
//! Nor do idle clients keep their places ([`Idle`]): a connection that
//! says nothing soon after it is accepted, or carries no request for
//! `NodeConfig::connection_idle`, reads as closed by its peer, and the
//! server ends it. On the gRPC port a request counts from its arrival to
//! the end of its answer ([`InUseLayer`]; a stream in progress is one), so
//! the server's own keepalive pings, which a live client answers, do not
//! keep a connection; calls to the health and reflection services, which
//! need no credentials, do not either. Members' connections are kept.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;

/// One in this many places is kept for members' addresses.
pub(crate) const MEMBERS_SHARE: usize = 8;

/// How often, at most, a refused connection is logged.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The ports whose connections take places, as metrics label them.
pub(crate) const PORTS: [&str; 2] = ["grpc", "http"];

/// The node's places (see the module).
pub(crate) struct Places {
    free: Arc<Semaphore>,
    limit: usize,
    /// Places only members' addresses may take.
    kept: usize,
    /// When a refusal was last logged, by port.
    last_logged: Mutex<HashMap<&'static str, Instant>>,
}

impl Places {
    /// `limit` places (`start` refuses 0; here it would be 1).
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Places {
            free: Arc::new(Semaphore::new(limit)),
            limit,
            kept: limit / MEMBERS_SHARE,
            last_logged: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection accepted on `port`; `member` says whether
    /// it comes from a member's address (asked only once the clients'
    /// places are taken). `None`, counted and logged, when there is none
    /// for it. Two ports take places at once, so a client may, in a race,
    /// take one of the members' places; never more than one per port.
    pub(crate) fn take(
        &self,
        port: &'static str,
        member: impl FnOnce() -> bool,
    ) -> Option<OwnedSemaphorePermit> {
        let open_to_it = self.free.available_permits() > self.kept || member();
        let place = open_to_it
            .then(|| Arc::clone(&self.free).try_acquire_owned().ok())
            .flatten();
        if place.is_none() {
            metrics::counter!("mnemo_connections_refused_total", "port" => port).increment(1);
            let mut logged = self.last_logged.lock().expect("lock poisoned");
            let last = logged.get(port);
            if last.is_none_or(|at| at.elapsed() >= REFUSED_LOG_EVERY) {
                logged.insert(port, Instant::now());
                tracing::warn!(
                    port,
                    limit = self.limit,
                    "refused a connection: as many are open as --max-connections allows"
                );
            }
        }
        place
    }
}

/// When an idle connection gives its place back: closed once nothing has
/// happened on it for `after`, and once nothing at all happened within
/// `first` (at most `after`) of being accepted. What counts as happening
/// depends on the port: a request in flight on the gRPC port, whose
/// server pings its clients (their answers are not activity); any byte
/// read on the HTTP port. Members' connections have none: they are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idle {
    pub(crate) after: Duration,
    pub(crate) first: Duration,
    pub(crate) by: Activity,
}

/// What keeps a connection from being idle (see [`Idle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    Requests,
    Bytes,
}

/// Longest a connection may stay silent after it was accepted, when the
/// idle limit is longer: time for a TLS handshake (10 s at most) and a
/// first request, also from clients that connect before they need to.
pub(crate) const FIRST_REQUEST_WITHIN: Duration = Duration::from_secs(30);

/// A connection that read anything this recently is not closed yet: the
/// bytes may be a request whose handling has not started (the server
/// reads it before it counts it), which closing would break.
const STILL_ARRIVING: Duration = Duration::from_secs(1);

impl Idle {
    /// Closing connections idle for `after` (`None`: never), judged by `by`.
    pub(crate) fn after(after: Option<Duration>, by: Activity) -> Option<Idle> {
        after.map(|after| Idle {
            after,
            first: after.min(FIRST_REQUEST_WITHIN),
            by,
        })
    }
}

/// What a connection is doing, shared by its [`Held`] and the requests it
/// carries (see [`Conn`]). Times are tokio's (paused in tests).
#[derive(Debug)]
pub(crate) struct Use {
    opened: tokio::time::Instant,
    /// Requests whose answer is still being sent.
    in_flight: AtomicU32,
    /// Since `opened`, when the last request started or ended, or the
    /// last byte was read (ms); `u64::MAX` until anything happened.
    last_ms: AtomicU64,
}

impl Use {
    fn new() -> Self {
        Use {
            opened: tokio::time::Instant::now(),
            in_flight: AtomicU32::new(0),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// A request starts; it ends when the guard is dropped (once its
    /// answer is sent, or abandoned).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// Since when the connection has been unused: `None` while a request
    /// is in flight.
    fn quiet_since(&self) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => Some(self.opened),
            ms => Some(self.opened + Duration::from_millis(ms)),
        }
    }

    fn never_used(&self) -> bool {
        self.last_ms.load(Ordering::Relaxed) == u64::MAX
    }
}

/// One request in flight on a connection (see [`Use::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Use>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        // Release: whoever sees the count drop sees the touch before it.
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The idle timer of a connection that has an [`Idle`] limit.
struct Watch {
    idle: Idle,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When a byte was last read (see [`STILL_ARRIVING`]).
    last_byte: Option<tokio::time::Instant>,
    /// The limit came: every read from now on is the end of the stream
    /// (a server may read again after the first, as HTTP's version
    /// detection does).
    ended: bool,
}

/// A connection on `port` holding its place; the place is given back when
/// it is dropped (after the connection itself is closed). With an [`Idle`]
/// limit it reads as closed by its peer (end of stream) once idle, which
/// closes it.
pub(crate) struct Held<T> {
    io: T,
    _place: OwnedSemaphorePermit,
    port: &'static str,
    used: Arc<Use>,
    watch: Option<Watch>,
}

impl<T> Held<T> {
    /// Must run in a tokio runtime when `idle` is given (its timer).
    pub(crate) fn new(
        io: T,
        place: OwnedSemaphorePermit,
        port: &'static str,
        idle: Option<Idle>,
    ) -> Self {
        metrics::gauge!("mnemo_connections", "port" => port).increment(1.0);
        let watch = idle.map(|idle| Watch {
            idle,
            timer: Box::pin(tokio::time::sleep(idle.first)),
            last_byte: None,
            ended: false,
        });
        Held {
            io,
            _place: place,
            port,
            used: Arc::new(Use::new()),
            watch,
        }
    }

    /// Whether the idle limit has come: polls the timer, moving it on while
    /// the connection is in use.
    fn idle_now(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(watch) = &mut self.watch else {
            return false;
        };
        while watch.timer.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            let arriving = watch
                .last_byte
                .map(|at| at + STILL_ARRIVING)
                .filter(|&until| until > now);
            let until = match (self.used.quiet_since(), arriving) {
                (None, _) => now + watch.idle.after,
                (Some(_), Some(arriving)) => arriving,
                (Some(_), None) if self.used.never_used() => return true,
                (Some(since), None) => since + watch.idle.after,
            };
            if until <= now {
                return true;
            }
            watch.timer.as_mut().reset(until);
        }
        false
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        metrics::gauge!("mnemo_connections", "port" => self.port).decrement(1.0);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.watch.as_ref().is_some_and(|w| w.ended) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if read.is_ready() {
            if let Some(watch) = &mut self.watch
                && buf.filled().len() > before
            {
                watch.last_byte = Some(tokio::time::Instant::now());
                if watch.idle.by == Activity::Bytes {
                    self.used.touch();
                }
            }
            return read;
        }
        if self.idle_now(cx) {
            // Read as the end of the stream: the server closes it.
            if let Some(watch) = &mut self.watch {
                watch.ended = true;
            }
            metrics::counter!("mnemo_connections_idle_closed_total", "port" => self.port)
                .increment(1);
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a gRPC request knows of its connection: its [`Use`], which the
/// node's request layer keeps up to date ([`InUse`]). (In place of tonic's
/// `TcpConnectInfo`, so tonic's `Request::remote_addr` and `peer_certs`
/// find nothing: the node reads certificates with [`peer_certs`].)
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    used: Arc<Use>,
}

impl tonic::transport::server::Connected for Held<tokio::net::TcpStream> {
    type ConnectInfo = Conn;

    fn connect_info(&self) -> Self::ConnectInfo {
        Conn {
            used: Arc::clone(&self.used),
        }
    }
}

/// The certificates the client of `request` presented over TLS (tonic's
/// `Request::peer_certs` for the node's own connection type).
pub(crate) fn peer_certs(
    extensions: &http::Extensions,
) -> Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>> {
    extensions
        .get::<tonic::transport::server::TlsConnectInfo<Conn>>()?
        .peer_certs()
}

/// The [`Use`] of the connection `extensions` came over, if any (tonic
/// gives a request over TLS the inner connection's details too).
fn use_of(extensions: &http::Extensions) -> Option<&Arc<Use>> {
    extensions.get::<Conn>().map(|conn| &conn.used)
}

/// Counts each gRPC request as in flight on its connection from when it
/// arrives until its answer has been sent (its body dropped), so that a
/// connection is idle only when it carries none (see [`Idle`]).
#[derive(Clone, Copy)]
pub(crate) struct InUseLayer;

impl<S> tower::Layer<S> for InUseLayer {
    type Service = InUse<S>;
    fn layer(&self, inner: S) -> InUse<S> {
        InUse(inner)
    }
}

/// See [`InUseLayer`].
#[derive(Clone)]
pub(crate) struct InUse<S>(S);

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for InUse<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Counted<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // mnemo's own services only: a health watch or a reflection stream
        // (neither needs credentials) must not keep a place for good.
        let ours = request.uri().path().starts_with("/mnemo.v1.");
        let in_flight = use_of(request.extensions())
            .filter(|_| ours)
            .map(Use::begin);
        let answer = self.0.call(request);
        Box::pin(async move {
            let answer = answer.await?;
            Ok(answer.map(|body| Counted {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// An answer's body, its request in flight until it is dropped.
pub(crate) struct Counted<B> {
    body: B,
    _in_flight: Option<InFlight>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_leave_the_members_share_and_places_come_back() {
        let (client, member) = (|| false, || true);
        let places = Places::new(16); // 2 kept
        let clients: Vec<_> = (0..14).map(|_| places.take("grpc", client)).collect();
        assert!(clients.iter().all(Option::is_some));
        assert!(places.take("http", client).is_none(), "the rest is kept");
        let members: Vec<_> = (0..2).map(|_| places.take("grpc", member)).collect();
        assert!(members.iter().all(Option::is_some));
        assert!(places.take("grpc", member).is_none(), "all taken");
        drop(members);
        assert!(
            places.take("grpc", client).is_none(),
            "kept places came back"
        );
        let member_again = places.take("grpc", member);
        assert!(member_again.is_some(), "to members");
        drop(clients);
        assert!(places.take("http", client).is_some());
    }

    mod idle {
        use std::time::Duration;

        use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

        use super::super::*;

        const AFTER: Duration = Duration::from_secs(60);

        fn held(by: Activity) -> (Held<DuplexStream>, DuplexStream) {
            let (ours, theirs) = tokio::io::duplex(64);
            let place = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let idle = Idle::after(Some(AFTER), by);
            (Held::new(ours, place, "grpc", idle), theirs)
        }

        /// Reads until the end of the stream; how long it took.
        async fn closed_after(held: &mut Held<DuplexStream>) -> Duration {
            let started = tokio::time::Instant::now();
            let mut buf = [0u8; 16];
            while held.read(&mut buf).await.unwrap() > 0 {}
            started.elapsed()
        }

        #[tokio::test(start_paused = true)]
        async fn a_connection_that_says_nothing_is_closed_after_the_first_wait() {
            let (mut held, mut client) = held(Activity::Requests);
            assert_eq!(closed_after(&mut held).await, FIRST_REQUEST_WITHIN);
            // Ended for good, whatever comes after.
            client.write_all(b"late").await.unwrap();
            assert_eq!(held.read(&mut [0u8; 8]).await.unwrap(), 0);
        }

        #[tokio::test(start_paused = true)]
        async fn a_request_in_flight_keeps_it_open_and_its_end_starts_the_wait() {
            let (mut held, _client) = held(Activity::Requests);
            let request = held.used.begin();
            let ending = tokio::spawn(async move {
                tokio::time::sleep(AFTER * 3).await;
                drop(request);
            });
            assert_eq!(closed_after(&mut held).await, AFTER * 4);
            ending.await.unwrap();
        }

        #[tokio::test(start_paused = true)]
        async fn on_the_grpc_port_bytes_are_not_use_and_on_the_http_port_they_are() {
            for (by, expected) in [
                (Activity::Requests, FIRST_REQUEST_WITHIN),
                (Activity::Bytes, Duration::from_secs(5) + AFTER),
            ] {
                let (mut held, mut client) = held(by);
                let talk = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    client.write_all(b"ping").await.unwrap();
                    client // kept open
                });
                assert_eq!(closed_after(&mut held).await, expected, "{by:?}");
                drop(talk.await.unwrap());
            }
        }

        /// Bytes that just arrived may be a request the server has not
        /// counted yet: the close waits a moment for it.
        #[tokio::test(start_paused = true)]
        async fn bytes_just_arrived_put_the_close_off_a_moment() {
            let (mut held, mut client) = held(Activity::Requests);
            let late = Duration::from_millis(29_500);
            assert_eq!(late + Duration::from_millis(500), FIRST_REQUEST_WITHIN);
            let talk = tokio::spawn(async move {
                tokio::time::sleep(late).await;
                client.write_all(b"HEADERS").await.unwrap();
                client
            });
            assert_eq!(closed_after(&mut held).await, late + STILL_ARRIVING);
            drop(talk.await.unwrap());
        }

        #[tokio::test(start_paused = true)]
        async fn without_a_limit_a_connection_stays() {
            let (ours, _theirs) = tokio::io::duplex(64);
            let place = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
            let mut held = Held::new(ours, place, "grpc", None);
            let mut buf = [0u8; 4];
            let read = tokio::time::timeout(AFTER * 10, held.read(&mut buf)).await;
            assert!(read.is_err(), "still open: {read:?}");
        }
    }
}
