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
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::places::{Held, Idle, Places};

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

/// Sets up an accepted connection: `TCP_NODELAY`, since small replies must
/// not wait for Nagle and delayed ACKs (~40 ms), and TCP keepalive, so
/// that a client that vanished without a word (its host lost power, a NAT
/// forgot it) is found out by the kernel, even on a connection that never
/// got as far as HTTP/2's own pings.
pub(crate) fn set_up(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Whether a remote address is a cluster member's.
pub(crate) type IsMember = Box<dyn Fn(std::net::IpAddr) -> bool + Send>;

/// Which connections the node takes, and how long it keeps them.
pub(crate) struct Admission {
    /// The node's places (see `crate::places`).
    pub(crate) places: Arc<Places>,
    pub(crate) is_member: IsMember,
    /// When clients' connections are closed idle; members' are kept.
    pub(crate) idle: Option<Idle>,
}

/// A connection accepted with its place under the node's limit, and when
/// it is closed idle (members' connections never are).
type Admitted = (TcpStream, OwnedSemaphorePermit, Option<Idle>);

/// An accepted gRPC connection, holding its place.
pub(crate) type Connection = Held<tokio::net::TcpStream>;

/// The connections one serving thread is handed.
pub(crate) type Incoming = tokio_stream::adapters::Map<
    UnboundedReceiverStream<Admitted>,
    fn(Admitted) -> std::io::Result<Connection>,
>;

/// Resolves when the thread is to stop taking requests.
pub(crate) type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `server` (a tonic router served over the connections given, until
/// the signal) on `threads` threads (0: this runtime) with the connections
/// `listener` accepts, each while it has one of the node's `places`
/// (`is_member` says which addresses are members'), until `left` turns
/// true; then each thread finishes what its connections asked (tonic's
/// graceful shutdown). The handle's result is the first thread's error,
/// if any.
pub(crate) fn serve<S, F>(
    listener: TcpListener,
    threads: usize,
    admission: Admission,
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
    tokio::spawn(accept(listener, handoff, admission, left.clone()));
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
    let adopt: fn(Admitted) -> std::io::Result<Connection> = |(stream, place, idle)| {
        let stream = tokio::net::TcpStream::from_std(stream)?;
        Ok(Held::new(stream, place, "grpc", idle))
    };
    UnboundedReceiverStream::new(rx).map(adopt)
}

/// Accepts connections, each while one of `places` is free for it, and
/// hands them out in turn, until `left`.
async fn accept(
    listener: TcpListener,
    threads: Vec<mpsc::UnboundedSender<Admitted>>,
    Admission {
        places,
        is_member,
        idle,
    }: Admission,
    mut left: watch::Receiver<bool>,
) {
    let mut next = 0usize;
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
        // Over the limit the connection is closed at once, which gives its
        // file descriptor back before it can take one the node needs; the
        // client sees it reset and may try another node.
        let member = is_member(from.ip());
        let Some(place) = places.take("grpc", || member) else {
            continue;
        };
        let idle = if member { None } else { idle };
        set_up(&stream);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // To the next thread whose server still runs (one that ended, its
        // error is in the serving handle, must not stop the others).
        let mut admitted = (stream, place, idle);
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
