//! Serving threads: where gRPC connections live.
//!
//! One task accepts connections. With
//! [`NodeConfig::serving_threads`](crate::NodeConfig) set (`mnemo node`
//! runs one per core), it hands each, round-robin, to one of that many
//! threads. With 0, it hands them all to one server on the node's
//! multi-threaded runtime, whose workers share every connection's work.
//! Each thread
//! runs a single-threaded runtime that serves every request of the
//! connections it was handed, and keeps its own [hop streams](crate::hop)
//! to peers. A forwarded request is thus read, routed, sent on, answered
//! and written back on one thread: the tasks it passes through wake each
//! other by a queue push, never by a wake-up of another thread (on small
//! hosts that is most of what a hop costs). Threads share the rest of the
//! node (store, router, membership), and background work (anti-entropy,
//! membership, the HTTP API) stays on the main runtime.
//!
//! The price: a thread has no one to take its work over. Where the node
//! shares its cores with other busy processes, a thread the kernel puts
//! aside for a scheduler tick holds all its connections' requests that
//! long, which a multi-threaded runtime's work stealing would have moved;
//! and one client connection gets one thread. Measured on a 2-core host
//! running three nodes and the load generator (`benches/hop.rs`), threads
//! still cost less CPU per call and answer sooner at every percentile,
//! one connection with 32 calls in flight included; the shared runtime's
//! workers wake each other across cores for every forwarded call, which
//! costs a forward about 30 µs of CPU on each node. Hence threads are the
//! default, and the shared runtime is there for hosts where they measure
//! worse.

use std::cell::Cell;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

thread_local! {
    /// 1-based index of the serving thread this is; 0 elsewhere.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

/// The serving thread this code runs on (1-based), or 0 off them.
pub(crate) fn current() -> usize {
    SERVING.with(Cell::get)
}

/// Pause after a failed accept (out of file descriptors, say) so that the
/// loop does not spin while the condition lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(20);

/// Threads of each serving thread's blocking pool (tokio's default is
/// 512): large recall scans go there, so that they do not hold up the
/// thread's other connections, and no more of them run at once than this
/// per serving thread; more wait their turn.
const BLOCKING_THREADS: usize = 2;

/// TCP keepalive of accepted connections: first probe after this long
/// idle, then every [`KEEPALIVE_INTERVAL`], closed after
/// [`KEEPALIVE_RETRIES`] unanswered (about 2 minutes in all).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// Arms TCP keepalive on an accepted connection, so that a client that
/// vanished without a word (its host lost power, a NAT forgot it) is found
/// out by the kernel, even on a connection that never got as far as
/// HTTP/2's own pings.
pub(crate) fn keep_alive(stream: &tokio::net::TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// How often, at most, a refused connection is logged.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The share of the connection limit kept for connections from cluster
/// members' addresses (one in this many places): clients that fill the
/// rest cannot lock peers out of forwarding and replicating to the node.
const MEMBERS_SHARE: usize = 8;

/// Whether a remote address is a cluster member's.
pub(crate) type IsMember = Box<dyn Fn(std::net::IpAddr) -> bool + Send>;

/// A connection accepted within the node's limit, with its place.
type Admitted = (TcpStream, OwnedSemaphorePermit);

/// The connections one serving thread is handed.
pub(crate) type Incoming = tokio_stream::adapters::Map<
    UnboundedReceiverStream<Admitted>,
    fn(Admitted) -> std::io::Result<Connection>,
>;

/// An accepted connection; its place under the node's limit is given back
/// when it closes.
pub(crate) struct Connection {
    stream: tokio::net::TcpStream,
    _place: OwnedSemaphorePermit,
}

impl Connection {
    fn adopt((stream, place): Admitted) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::from_std(stream)?;
        metrics::gauge!("mnemo_grpc_connections").increment(1.0);
        Ok(Connection {
            stream,
            _place: place,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!("mnemo_grpc_connections").decrement(1.0);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Resolves when the thread is to stop taking requests.
pub(crate) type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `server` (a tonic router served over the connections given, until
/// the signal) on `config.serving_threads` threads with the connections
/// `listener` accepts, at most `config.max_connections` open at once (one
/// over it is closed at once; the last of every [`MEMBERS_SHARE`] places
/// go to addresses `is_member` names only), until `left` turns true; then
/// each thread finishes what its connections asked (tonic's graceful
/// shutdown). The handle's result is the first thread's error, if any.
pub(crate) fn serve<S, F>(
    listener: TcpListener,
    config: &crate::NodeConfig,
    is_member: IsMember,
    left: &watch::Receiver<bool>,
    server: S,
) -> Result<tokio::task::JoinHandle<Result<(), BoxError>>, BoxError>
where
    S: FnOnce(Incoming, Stop) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
{
    let mut handoff = Vec::new();
    let mut done = Vec::new();
    // 0: this runtime serves; else threads 1..=N do, and this one only accepts.
    let threads = config.serving_threads;
    let servers = if threads == 0 { 0..=0 } else { 1..=threads };
    for index in servers {
        let (tx, rx) = mpsc::unbounded_channel::<Admitted>();
        let (finished, finish) = oneshot::channel::<Result<(), BoxError>>();
        let serving = run(server.clone(), rx, left.clone());
        if index == 0 {
            // On the runtime this runs on, with the other tasks.
            tokio::spawn(async move {
                let _ = finished.send(serving.await);
            });
        } else {
            std::thread::Builder::new()
                .name(format!("mnemo-serve-{index}"))
                .spawn(move || {
                    SERVING.with(|s| s.set(index));
                    let result = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .max_blocking_threads(BLOCKING_THREADS)
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(serving),
                        Err(e) => Err(e.into()),
                    };
                    let _ = finished.send(result);
                })?;
        }
        handoff.push(tx);
        done.push(finish);
    }
    let limit = config.max_connections.min(Semaphore::MAX_PERMITS);
    tokio::spawn(accept(listener, handoff, limit, is_member, left.clone()));
    // Ends at the first server's error, or when all have ended.
    let each = done.into_iter().map(|finish| async move {
        finish
            .await
            .unwrap_or_else(|_| Err("a serving thread ended without a word".into()))
    });
    Ok(tokio::spawn(async move {
        futures_util::future::try_join_all(each).await.map(drop)
    }))
}

/// `server` over the connections sent on `rx`, until `left`.
async fn run<S, F>(
    server: S,
    rx: mpsc::UnboundedReceiver<Admitted>,
    mut left: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    S: FnOnce(Incoming, Stop) -> F,
    F: std::future::Future<Output = Result<(), tonic::transport::Error>>,
{
    let stop: Stop = Box::pin(async move {
        let _ = left.wait_for(|l| *l).await;
    });
    server(adopted(rx), stop).await.map_err(BoxError::from)
}

/// The connections sent on `rx`, each registered with the runtime that
/// polls the stream.
fn adopted(rx: mpsc::UnboundedReceiver<Admitted>) -> Incoming {
    let adopt: fn(Admitted) -> std::io::Result<Connection> = Connection::adopt;
    UnboundedReceiverStream::new(rx).map(adopt)
}

/// Accepts connections, at most `limit` open at once (the last
/// `limit / MEMBERS_SHARE` for members' addresses only), and hands them
/// out in turn, until `left`.
async fn accept(
    listener: TcpListener,
    threads: Vec<mpsc::UnboundedSender<Admitted>>,
    limit: usize,
    is_member: IsMember,
    mut left: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(limit));
    let kept = limit / MEMBERS_SHARE;
    let mut next = 0usize;
    let mut last_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = left.wait_for(|l| *l) => return,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        // Over the limit the connection is closed at once: the client sees
        // it reset and may try another node. Its file descriptor is given
        // back at once, before it can take one the node needs (its store,
        // its peers). This task alone takes places (closing connections
        // only give them back), so the count it reads cannot fall before
        // it takes one.
        let admitted = places.available_permits() > kept || is_member(from.ip());
        let place = admitted.then(|| Arc::clone(&places).try_acquire_owned().ok());
        let Some(Some(place)) = place else {
            metrics::counter!("mnemo_grpc_connections_refused_total").increment(1);
            if last_logged.is_none_or(|at| at.elapsed() >= REFUSED_LOG_EVERY) {
                last_logged = Some(Instant::now());
                tracing::warn!(
                    limit,
                    "refused a connection: as many are open as --max-connections allows"
                );
            }
            drop(stream);
            continue;
        };
        // Small replies must not wait for Nagle and delayed ACKs (~40 ms).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        keep_alive(&stream);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // To the next thread whose server still runs (one that ended, its
        // error is in the serving handle, must not stop the others).
        let mut admitted = (stream, place);
        let mut tried = 0;
        loop {
            let thread = &threads[next % threads.len()];
            next = next.wrapping_add(1);
            match thread.send(admitted) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => admitted = back,
            }
            tried += 1;
            if tried == threads.len() {
                return; // every server ended
            }
        }
    }
}
