//! The HTTP port of a secure node speaks TLS with the node's certificate;
//! a client certificate, when presented, is checked against the CA and
//! handed to the handlers with the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::places::{Held, Idle, Places};

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 128;

/// Who is at the other end of an HTTP connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client certificate it presented (TLS only).
    pub(crate) certificate: Option<CertificateDer<'static>>,
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, PlainListener>) -> Self {
        Peer { certificate: None }
    }
}

/// Accepts TCP connections while the node has places for them (see
/// `crate::places`); closes those over the limit.
pub(crate) struct PlainListener {
    listener: TcpListener,
    places: Arc<Places>,
    idle: Option<Idle>,
}

impl PlainListener {
    /// Connections from `listener`, each while it has one of `places`,
    /// closed after `idle`.
    pub(crate) fn new(listener: TcpListener, (places, idle): (Arc<Places>, Option<Idle>)) -> Self {
        PlainListener {
            listener,
            places,
            idle,
        }
    }
}

impl Listener for PlainListener {
    type Io = Held<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, from) = accept(&mut self.listener).await;
            if let Some(place) = self.places.take("http", || false) {
                return (Held::new(tcp, place, "http", self.idle), from);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The next connection `listener` accepts, with `TCP_NODELAY` and
/// keepalive set. Failures are axum's to handle: a connection reset
/// before it was taken is skipped; anything else (out of file descriptors)
/// is logged as an error and waited out for a second.
async fn accept(listener: &mut TcpListener) -> (TcpStream, std::net::SocketAddr) {
    let (tcp, from) = Listener::accept(listener).await;
    crate::serving::set_up(&tcp);
    (tcp, from)
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts TCP connections and hands over those whose TLS handshake
/// succeeded. Handshakes run concurrently, so a slow or silent client
/// holds up no one else.
/// A connection takes its place under the node's limit before its
/// handshake, and holds it until it closes.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<Held<TcpStream>>, Peer)>,
}

impl TlsListener {
    pub(crate) fn new(
        mut listener: TcpListener,
        config: Arc<ServerConfig>,
        (places, idle): (Arc<Places>, Option<Idle>),
    ) -> Self {
        let (tx, ready) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, from) = accept(&mut listener).await;
                let Some(place) = places.take("http", || false) else {
                    continue;
                };
                let tcp = Held::new(tcp, place, "http", idle);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.clone().into_owned());
                            let _ = tx.send((tls, Peer { certificate })).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %from, "http TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%from, "http TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<Held<TcpStream>>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    /// Who is at this end: no client certificate (axum asks only to log).
    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer { certificate: None })
    }
}
