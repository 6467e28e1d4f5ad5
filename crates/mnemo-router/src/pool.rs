//! Connection pool: a few HTTP/2 channels per remote node.
//!
//! One HTTP/2 connection multiplexes many requests, but a single connection
//! serialises on one TCP stream and one h2 flow-control window, so each node
//! gets a small fixed set of [`Channel`]s (default [`DEFAULT_CHANNELS`] = 4)
//! picked round-robin by an atomic counter.
//!
//! Channels are made with [`Endpoint::connect_lazy`]: nothing connects until
//! the first request, and a node that is down never fails pool creation. Each
//! slot is filled on first use (`OnceLock`), so a node that is never asked
//! costs a parsed endpoint and nothing else, and repeat requests reuse the
//! slot's channel (tonic reconnects it underneath if the connection drops).
//! After the first use the get path is one `fetch_add` and one atomic load.
//!
//! Settings: connect timeout (default 1 s), HTTP/2 keep-alive ping every
//! 10 s, dead after 5 s without an answer, also while idle, so a half-open TCP
//! connection is noticed before a request waits on it. Entries live in the
//! router's table, found by the topology's member index; when a topology
//! update drops a member (gone or `Left`) its entry, and with it its channels,
//! is dropped.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::RouterError;
use crate::topology::{Member, NodeId};

/// Default channels per remote node.
pub const DEFAULT_CHANNELS: usize = 4;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Channels per remote node (at least 1).
    pub channels_per_node: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval.
    pub keep_alive_interval: Duration,
    /// Time to wait for a keep-alive answer.
    pub keep_alive_timeout: Duration,
    /// TLS for every channel (the scheme becomes `https`); `None`:
    /// plaintext.
    pub tls: Option<ClientTlsConfig>,
    /// Where the channels' tasks (buffer and connection) run; `None`: the
    /// runtime of the call that opens each. A node whose requests are
    /// served on short-lived or single-threaded runtimes gives its main
    /// runtime here, so that shared channels outlive and do not hold up
    /// any one of them.
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Spawns a channel's tasks on a given runtime.
#[derive(Clone)]
struct OnRuntime(tokio::runtime::Handle);

impl<F> hyper::rt::Executor<F> for OnRuntime
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            channels_per_node: DEFAULT_CHANNELS,
            connect_timeout: Duration::from_secs(1),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            tls: None,
            runtime: None,
        }
    }
}

/// How `member` is dialled with `config`: scheme, TLS, connect timeout and
/// keep-alive. The pool's channels use it, and so may a one-off call to a
/// node that is not (or not yet) in the topology.
pub fn endpoint(member: &Member, config: &PoolConfig) -> Result<Endpoint, RouterError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let invalid = || RouterError::InvalidAddress {
        node: member.id.clone(),
        addr: member.addr.clone(),
    };
    let mut endpoint =
        Endpoint::from_shared(format!("{scheme}://{}", member.addr)).map_err(|_| invalid())?;
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|_| invalid())?;
    }
    if let Some(runtime) = &config.runtime {
        endpoint = endpoint.executor(OnRuntime(runtime.clone()));
    }
    Ok(endpoint
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(config.keep_alive_interval)
        .keep_alive_timeout(config.keep_alive_timeout)
        .keep_alive_while_idle(true))
}

/// The channels of one remote node.
#[derive(Debug)]
pub struct NodeChannels {
    id: NodeId,
    addr: String,
    endpoint: Endpoint,
    slots: Box<[OnceLock<Channel>]>,
    next: AtomicUsize,
}

impl NodeChannels {
    /// Channels for `member` (none opened yet).
    pub fn new(member: &Member, config: &PoolConfig) -> Result<Self, RouterError> {
        let endpoint = endpoint(member, config)?;
        Ok(Self {
            id: member.id.clone(),
            addr: member.addr.clone(),
            endpoint,
            slots: (0..config.channels_per_node.max(1))
                .map(|_| OnceLock::new())
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The node.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The address the channels dial.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The next channel, round-robin; opens it lazily on the first pass.
    /// Must run inside a tokio runtime (tonic spawns the channel's worker).
    #[inline]
    pub fn get(&self) -> &Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].get_or_init(|| {
            let ch = self.endpoint.connect_lazy();
            crate::metrics::pool_channels(&self.id, self.open_count() + 1);
            ch
        })
    }

    /// A channel of its own, outside the pool's slots, with the pool's
    /// settings except that its tasks run on the calling runtime (so that
    /// a single-threaded runtime keeps a call's I/O to itself).
    /// Must run inside a tokio runtime.
    pub fn dedicated(&self) -> Channel {
        let here = OnRuntime(tokio::runtime::Handle::current());
        self.endpoint.clone().executor(here).connect_lazy()
    }

    /// Channels opened so far.
    pub fn open_count(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }

    /// Channel slots (opened or not).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lazy_round_robin_reuses_channels() {
        let m = Member::alive("n1", "127.0.0.1:1"); // nothing listens there
        let p = NodeChannels::new(&m, &PoolConfig::default()).unwrap();
        assert_eq!(p.open_count(), 0);
        for _ in 0..10 {
            let _ = p.get();
        }
        assert_eq!(p.open_count(), 4);
        let a: *const Channel = p.get();
        for _ in 0..3 {
            let _ = p.get();
        }
        assert!(std::ptr::eq(a, p.get()), "same slot, same channel");
    }

    #[test]
    fn invalid_address_is_an_error() {
        let m = Member::alive("n1", "not a host:port");
        let e = NodeChannels::new(&m, &PoolConfig::default()).unwrap_err();
        assert!(matches!(e, RouterError::InvalidAddress { .. }));
    }
}
