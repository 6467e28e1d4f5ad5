//! Asynchronous replication from a space's primary to its replicas.
//!
//! The primary orders a space's writes in its log (the store assigns each a
//! sequence number). For every replica there is one worker that ships the
//! log in order, in batches of up to [`BATCH`] entries, from the replica's
//! last applied position; the replica applies idempotently and answers with
//! its new position. A worker that does not know a replica's position asks
//! for it first, so shipping resumes where the replica stopped after either
//! side restarts (catch-up). Failures keep the space marked and retry with
//! capped exponential backoff.
//!
//! `ack=quorum` writes wait here until a majority of the replica set (the
//! primary included) has applied them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mnemo_proto::v1::{self, internal_client::InternalClient};
use mnemo_store::Store;
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;

use crate::convert::entry_to_wire;

/// Most log entries in one replication request.
pub const BATCH: usize = 512;
/// Largest encoded batch, half the gRPC message limit.
const MAX_BATCH_BYTES: usize = crate::config::MAX_MESSAGE_BYTES / 2;
/// Longest wait between retries to an unreachable replica.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Deadline of one replication call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds a channel to a node by id (the router's pool).
pub type ChannelFor = Arc<dyn Fn(&str) -> Option<Channel> + Send + Sync>;

/// Ships writes to replicas and tracks how far each one is.
pub struct Replicator {
    /// This node's id, sent with every batch.
    node_id: String,
    store: Store,
    channel_for: ChannelFor,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    /// (space, replica) → highest position the replica confirmed.
    positions: Mutex<HashMap<(String, String), u64>>,
    /// Bumped whenever a position advances; quorum waiters watch it.
    advanced: watch::Sender<u64>,
}

struct Peer {
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
}

/// One replica's position in one space, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Space name.
    pub space: String,
    /// Replica node id.
    pub replica: String,
    /// The primary's last log position.
    pub primary_seq: u64,
    /// The replica's confirmed position.
    pub replica_seq: u64,
}

impl Replicator {
    /// A replicator of node `node_id`'s `store`, reaching replicas through
    /// `channel_for`.
    pub fn new(node_id: String, store: Store, channel_for: ChannelFor) -> Arc<Self> {
        Arc::new(Replicator {
            node_id,
            store,
            channel_for,
            peers: Mutex::new(HashMap::new()),
            positions: Mutex::new(HashMap::new()),
            advanced: watch::Sender::new(0),
        })
    }

    /// Marks `space` as having writes for each of `replicas` to ship.
    pub fn notify<'a>(self: &Arc<Self>, space: &str, replicas: impl IntoIterator<Item = &'a str>) {
        for replica in replicas {
            let peer = self.peer(replica);
            peer.dirty
                .lock()
                .expect("lock poisoned")
                .insert(space.to_owned());
            peer.wake.notify_one();
        }
    }

    fn peer(self: &Arc<Self>, replica: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("lock poisoned");
        if let Some(p) = peers.get(replica) {
            return Arc::clone(p);
        }
        let peer = Arc::new(Peer {
            dirty: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        peers.insert(replica.to_owned(), Arc::clone(&peer));
        let (this, worker_peer, id) = (Arc::clone(self), Arc::clone(&peer), replica.to_owned());
        tokio::spawn(async move { this.work(id, worker_peer).await });
        peer
    }

    /// Stops tracking a node that left the cluster.
    pub fn forget_replica(&self, replica: &str) {
        if let Some(peer) = self.peers.lock().expect("lock poisoned").remove(replica) {
            // Its worker wakes, finds itself gone and ends.
            peer.wake.notify_one();
        }
        self.positions
            .lock()
            .expect("lock poisoned")
            .retain(|(_, r), _| r != replica);
    }

    async fn work(self: Arc<Self>, replica: String, peer: Arc<Peer>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let spaces: Vec<String> = peer.dirty.lock().expect("lock poisoned").drain().collect();
            if spaces.is_empty() {
                peer.wake.notified().await;
                if !self
                    .peers
                    .lock()
                    .expect("lock poisoned")
                    .contains_key(&replica)
                {
                    return;
                }
                continue;
            }
            let mut failed = false;
            for space in spaces {
                match self.ship(&replica, &space).await {
                    Ok(done) => {
                        if !done {
                            peer.dirty.lock().expect("lock poisoned").insert(space);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%replica, %space, error = %e, "replication attempt failed");
                        metrics::counter!("mnemo_replication_errors_total").increment(1);
                        peer.dirty.lock().expect("lock poisoned").insert(space);
                        failed = true;
                    }
                }
            }
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                backoff = FIRST_BACKOFF;
            }
        }
    }

    /// Ships one batch of `space` to `replica`. `Ok(true)` when it is caught up.
    async fn ship(&self, replica: &str, space: &str) -> Result<bool, tonic::Status> {
        let channel = (self.channel_for)(replica)
            .ok_or_else(|| tonic::Status::unavailable(format!("no route to {replica}")))?;
        let mut client = InternalClient::new(channel);
        let key = (space.to_owned(), replica.to_owned());
        let known = self
            .positions
            .lock()
            .expect("lock poisoned")
            .get(&key)
            .copied();
        let position = if let Some(p) = known {
            p
        } else {
            let mut request = tonic::Request::new(v1::PositionRequest {
                space: space.to_owned(),
            });
            request.set_timeout(CALL_TIMEOUT);
            let p = client.position(request).await?.into_inner().applied_seq;
            self.advance(&key, p);
            p
        };
        let mut entries = self
            .store
            .log_since(space, position, BATCH)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        // Stay well under the receiver's message limit: memories with large
        // embeddings make 512 entries larger than 4 MiB. One entry always goes.
        let mut bytes = 0;
        let keep = entries
            .iter()
            .take_while(|e| {
                bytes += prost::Message::encoded_len(*e);
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        entries.truncate(keep);
        if entries.is_empty() {
            return Ok(true);
        }
        let last = entries.last().map_or(position, |e| e.seq);
        let mut request = tonic::Request::new(v1::ReplicateRequest {
            space: space.to_owned(),
            from_node: self.node_id.clone(),
            entries: entries.into_iter().map(entry_to_wire).collect(),
        });
        request.set_timeout(CALL_TIMEOUT);
        match client.replicate(request).await {
            Ok(r) => {
                let applied = r.into_inner().applied_seq;
                self.advance(&key, applied);
                metrics::counter!("mnemo_replication_entries_total").increment(last - position);
                Ok(applied >= self.store.seq(space))
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The replica's position is not what we thought: ask again.
                self.positions.lock().expect("lock poisoned").remove(&key);
                Err(status)
            }
            Err(status) => Err(status),
        }
    }

    fn advance(&self, key: &(String, String), position: u64) {
        let mut positions = self.positions.lock().expect("lock poisoned");
        let entry = positions.entry(key.clone()).or_insert(0);
        *entry = position;
        let lag = self.store.seq(&key.0).saturating_sub(position);
        drop(positions);
        metrics::gauge!("mnemo_replication_lag", "space" => key.0.clone(), "replica" => key.1.clone())
            .set(lag as f64);
        self.advanced.send_modify(|v| *v += 1);
    }

    /// Waits until `needed` of `replicas` confirmed `seq` of `space`, or
    /// `timeout` passes. Returns how many had.
    pub async fn wait_for(
        &self,
        space: &str,
        seq: u64,
        replicas: &[String],
        needed: usize,
        timeout: Duration,
    ) -> Result<(), usize> {
        let mut advanced = self.advanced.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let have = {
                let positions = self.positions.lock().expect("lock poisoned");
                replicas
                    .iter()
                    .filter(|r| {
                        positions
                            .get(&(space.to_owned(), (*r).clone()))
                            .is_some_and(|p| *p >= seq)
                    })
                    .count()
            };
            if have >= needed {
                return Ok(());
            }
            tokio::select! {
                moved = advanced.changed() => if moved.is_err() { return Err(have) },
                () = tokio::time::sleep_until(deadline) => return Err(have),
            }
        }
    }

    /// Every tracked replica position, sorted.
    pub fn lag(&self) -> Vec<Lag> {
        let positions = self.positions.lock().expect("lock poisoned");
        let mut out: Vec<Lag> = positions
            .iter()
            .map(|((space, replica), p)| Lag {
                space: space.clone(),
                replica: replica.clone(),
                primary_seq: self.store.seq(space),
                replica_seq: *p,
            })
            .collect();
        out.sort_by(|a, b| (&a.space, &a.replica).cmp(&(&b.space, &b.replica)));
        out
    }
}
