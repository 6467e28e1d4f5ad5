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

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// A connection on `port` holding its place; the place is given back when
/// it is dropped (after the connection itself is closed).
pub(crate) struct Held<T> {
    io: T,
    _place: OwnedSemaphorePermit,
    port: &'static str,
}

impl<T> Held<T> {
    pub(crate) fn new(io: T, place: OwnedSemaphorePermit, port: &'static str) -> Self {
        metrics::gauge!("mnemo_connections", "port" => port).increment(1.0);
        Held {
            io,
            _place: place,
            port,
        }
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
        Pin::new(&mut self.io).poll_read(cx, buf)
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

impl tonic::transport::server::Connected for Held<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
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
}
