//! Serving a request from this node's own store: what every routed request
//! ends in, on whichever node the router chose.

use std::time::Duration;

use mnemo_proto::v1;
use mnemo_store::{Cue, Memory, validate};
use tonic::Status;

use crate::convert::scored_to_wire;
use crate::error::NodeError;
use crate::node::Node;

/// Spaces up to this many memories are scanned on the request's worker.
const INLINE_SCAN_LIMIT: usize = 20_000;

/// Remembers as the space's primary, hands the write to replication and,
/// for `ack=quorum`, waits until a majority of the replica set has it.
pub(crate) async fn remember(
    node: &Node,
    r: v1::RememberRequest,
    timeout: Duration,
) -> Result<v1::RememberResponse, Status> {
    let memory = Memory {
        id: r.id,
        content: r.content,
        embedding: r.embedding,
        confidence: r.confidence.unwrap_or(1.0),
        created_at_ms: 0,
        tags: r.tags,
    };
    let (id, outcome) = node
        .store
        .remember(&r.space, memory)
        .await
        .map_err(NodeError::from)?;
    let replicas = node.replicas_of(&r.space);
    node.replicator
        .notify(&r.space, replicas.iter().map(String::as_str));
    if r.ack == v1::Ack::Quorum as i32 {
        // A majority of the replica set is RF/2 + 1 nodes, this primary one
        // of them. RF is the configured factor (capped by the cluster size
        // the partition detector expects), not the live view: a node cut
        // off from its replicas must not call itself a quorum.
        let expected = node.view.borrow().partition.expected.max(1);
        let needed = node.config.replication_factor.min(expected) / 2;
        if replicas.len() < needed {
            return Err(Status::unavailable(format!(
                "write {id} to space {:?} is durable on {} only: quorum needs {needed} replicas                  and {} are reachable",
                r.space,
                node.id,
                replicas.len()
            )));
        }
        node.replicator
            .wait_for(&r.space, outcome.seq, &replicas, needed, timeout)
            .await
            .map_err(|have| {
                Status::unavailable(format!(
                    "write {id} to space {:?} is durable on {} but only {have} of the {} replicas \
                     confirmed it before the deadline; quorum needs {needed}",
                    r.space,
                    node.id,
                    replicas.len()
                ))
            })?;
    }
    Ok(v1::RememberResponse {
        id,
        space: r.space,
        served_by: node.id.clone(),
        created: outcome.changed,
        seq: outcome.seq,
    })
}

pub(crate) async fn forget(
    node: &Node,
    r: v1::ForgetRequest,
) -> Result<v1::ForgetResponse, Status> {
    let outcome = node
        .store
        .forget(&r.space, &r.id)
        .await
        .map_err(NodeError::from)?;
    let replicas = node.replicas_of(&r.space);
    node.replicator
        .notify(&r.space, replicas.iter().map(String::as_str));
    Ok(v1::ForgetResponse {
        space: r.space,
        id: r.id,
        served_by: node.id.clone(),
        existed: outcome.existed,
    })
}

/// Ranks the local copy of a space; confidences are scaled by `penalty`.
pub(crate) fn recall(
    node: &Node,
    r: &v1::RecallRequest,
    penalty: f32,
) -> Result<v1::RecallResponse, Status> {
    let k = validate::k(r.k).map_err(NodeError::from)?;
    let min = r.min_confidence.unwrap_or(0.0);
    let scan = || {
        node.store.recall(
            &r.space,
            Cue {
                text: &r.cue,
                embedding: &r.cue_embedding,
            },
            k,
            min,
        )
    };
    // A large scan takes milliseconds: let the runtime move other tasks off
    // this worker. A small one is cheaper than that hand-off.
    let found = if node.store.len(&r.space) > INLINE_SCAN_LIMIT {
        tokio::task::block_in_place(scan)
    } else {
        scan()
    }
    .map_err(NodeError::from)?;
    Ok(v1::RecallResponse {
        space: r.space.clone(),
        served_by: node.id.clone(),
        fallback: false,
        degraded: penalty < 1.0,
        memories: found.iter().map(|s| scored_to_wire(s, penalty)).collect(),
    })
}

pub(crate) async fn consolidate(
    node: &Node,
    r: v1::ConsolidateRequest,
    threshold: f32,
) -> Result<v1::ConsolidateResponse, Status> {
    let report = node
        .store
        .consolidate(&r.space, threshold)
        .await
        .map_err(NodeError::from)?;
    let replicas = node.replicas_of(&r.space);
    node.replicator
        .notify(&r.space, replicas.iter().map(String::as_str));
    Ok(v1::ConsolidateResponse {
        space: r.space,
        served_by: node.id.clone(),
        merged: report
            .merged
            .iter()
            .map(|c| v1::Merge {
                id: c.merged.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
                inputs: c.inputs.clone(),
                confidence: c.merged.as_ref().map_or(0.0, |m| m.confidence),
            })
            .collect(),
        memories_before: report.before,
        memories_after: report.after,
    })
}
