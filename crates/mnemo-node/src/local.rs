//! Serving a request from this node's own store: what every routed request
//! ends in, on whichever node the router chose.

use std::time::Duration;

use mnemo_proto::v1;
use mnemo_store::{Cue, Memory, validate};
use tonic::Status;

use crate::calls::Context;
use crate::convert::{memory_to_wire, scored_to_wire};
use crate::error::NodeError;
use crate::node::Node;

/// Spaces up to this many memories are scanned on the request's worker.
const INLINE_SCAN_LIMIT: usize = 20_000;

/// Remembers on this node, sends the write to the space's other holders
/// and, for `ack=quorum`, waits until a majority of the replica set has it.
pub(crate) async fn remember(
    node: &Node,
    r: v1::RememberRequest,
    until: tokio::time::Instant,
) -> Result<v1::RememberResponse, Status> {
    let memory = Memory {
        id: r.id,
        content: r.content,
        embedding: r.embedding,
        confidence: r.confidence.unwrap_or(1.0),
        created_at_ms: 0,
        tags: r.tags,
        minority: node.router.partition().partitioned,
        ..Memory::default()
    };
    let (id, written) = node
        .store
        .remember(&r.space, memory)
        .await
        .map_err(NodeError::from)?;
    let quorum = r.ack == v1::Ack::Quorum as i32;
    replicate(node, &r.space, &written.elements, quorum, until, &id).await?;
    Ok(v1::RememberResponse {
        id,
        space: r.space,
        served_by: node.id.clone(),
        created: written.changed,
    })
}

/// Sends a write's elements to the other holders of `space`; with `quorum`
/// waits until a majority of the replica set applied them. `what` names the
/// write in errors.
async fn replicate(
    node: &Node,
    space: &str,
    elements: &[mnemo_store::Element],
    quorum: bool,
    until: tokio::time::Instant,
    what: &str,
) -> Result<(), Status> {
    // Cut off from the majority, only the nodes the space was placed on
    // count: a node that merely shares the minority is no replica of it.
    let replicas: Vec<String> = if node.router.partition().partitioned {
        node.placed_holders_of(space)
            .into_iter()
            .filter(|(id, live)| *live && *id != node.id)
            .map(|(id, _)| id)
            .collect()
    } else {
        node.replicas_of(space)
    };
    let mut acks = node.replicator.send(space, elements, &replicas);
    if !quorum {
        return Ok(());
    }
    // A majority of the replica set is copies/2 + 1 nodes, this one of them.
    let needed = copies(node) / 2;
    if replicas.len() < needed {
        // A quorum shortfall says nothing about this node's health: the
        // router moves on to the next holder (which takes the same write,
        // idempotently) without counting a fault against this one.
        return Err(mnemo_router::error::refusal(
            "quorum-shortfall",
            format!(
                "write {what} to space {space:?} is durable on {} only: quorum needs {needed} more \
             holders and {} are reachable",
                node.id,
                replicas.len()
            ),
        ));
    }
    // Stop waiting a little before the caller's deadline, so that the
    // caller hears how far the write got ("durable here, N of M confirmed")
    // rather than a bare DEADLINE_EXCEEDED.
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    let wait = left.saturating_sub((left / 10).max(Duration::from_millis(20)));
    acks.wait(needed, wait).await.map_err(|have| {
        mnemo_router::error::refusal(
            "quorum-shortfall",
            format!(
                "write {what} to space {space:?} is durable on {} but only {have} of the {} other \
             holders confirmed it (before the deadline, or as many as had room to queue it); \
             quorum needs {needed}",
                node.id,
                replicas.len()
            ),
        )
    })
}

pub(crate) async fn forget(
    node: &Node,
    r: v1::ForgetRequest,
    until: tokio::time::Instant,
) -> Result<v1::ForgetResponse, Status> {
    let space_existed = node.store.holds(&r.space);
    let written = node
        .store
        .forget(&r.space, &r.id)
        .await
        .map_err(NodeError::from)?;
    let quorum = r.ack == v1::Ack::Quorum as i32;
    replicate(node, &r.space, &written.elements, quorum, until, &r.id).await?;
    Ok(v1::ForgetResponse {
        space: r.space,
        id: r.id,
        served_by: node.id.clone(),
        existed: written.existed,
        space_existed,
    })
}

/// Copies of a space a write quorum is counted over: the configured
/// replication factor, capped by the cluster size the partition detector
/// expects (not the live view: a node cut off from the other holders must
/// not call itself a quorum).
fn copies(node: &Node) -> usize {
    let expected = node.view.borrow().partition.expected.max(1);
    node.config.replication_factor.min(expected)
}

/// Refuses a read of `space` this node may not answer: while it catches
/// up on it, or, in the primary's place, when it cannot overlap the write
/// quorum first (see [`overlap_write_quorum`]).
pub(crate) async fn check_readable(
    node: &Node,
    space: &str,
    context: Context,
) -> Result<(), Status> {
    check_caught_up(node, space)?;
    if context.fallback {
        overlap_write_quorum(node, space, context.until).await?;
    }
    Ok(())
}

/// Makes a read served by a holder in the primary's place (a fallback, a
/// hedge, or any read while the primary as placed is down: see
/// `Context::fallback`) see every write a quorum acknowledged. That quorum
/// is the primary and enough replicas, not necessarily this one. So the
/// space first takes what the other live holders as placed have and this
/// one lacks (not stand-ins, whose copies may be partial), until enough
/// have answered that their copies and this one overlap every write
/// quorum: with three copies, one other. Each is asked by comparing
/// summaries by bucket (`antientropy::pull_difference`): one round trip
/// when the copies agree, whose size grows with the buckets that differ;
/// a read the primary serves needs none of this. It gives up at `until`, the caller's
/// deadline, refusing: the router then asks the next holder.
async fn overlap_write_quorum(
    node: &Node,
    space: &str,
    until: tokio::time::Instant,
) -> Result<(), Status> {
    use futures_util::StreamExt;
    if node.router.partition().partitioned {
        return Ok(());
    }
    // A write quorum is this many plus the primary (as in `remember`).
    let copies = copies(node);
    let needed = copies.saturating_sub(1 + copies / 2);
    if needed == 0 {
        return Ok(());
    }
    // Holders whose breaker is open only when the others are too few: such
    // a holder is not answering (stalled, cut off), and each comparison it
    // is sent would be reset by the read that gives up on it, which a peer
    // counts against the connection when it comes back (HTTP/2's guard
    // against rapid resets).
    let (mut others, doubtful): (Vec<String>, Vec<String>) = node
        .placed_holders_of(space)
        .into_iter()
        .filter(|(id, live)| *live && *id != node.id)
        .map(|(id, _)| id)
        .partition(|id| node.router.breaker_closed(id));
    if others.len() < needed {
        others.extend(doubtful);
    }
    let mut syncs: futures_util::stream::FuturesUnordered<_> = others
        .iter()
        .map(|peer| crate::antientropy::pull_difference(node, space, peer))
        .collect();
    let (mut synced, mut last_error) = (0, None);
    let overlapped = tokio::time::timeout_at(until, async {
        while let Some(outcome) = syncs.next().await {
            match outcome {
                Ok(_) => synced += 1,
                Err(e) => last_error = Some(e.message().to_owned()),
            }
            if synced >= needed {
                return true;
            }
        }
        false
    })
    .await;
    if overlapped == Ok(true) {
        return Ok(());
    }
    let why = match (overlapped, last_error) {
        (Err(_), _) => "; the caller's deadline came first".to_owned(),
        (Ok(_), Some(e)) => format!("; last error: {e}"),
        (Ok(_), None) => String::new(),
    };
    // No fault of this node: the next holder may do better.
    Err(mnemo_router::error::refusal(
        "no-overlap",
        format!(
            "node {} answers for space {space:?} in its primary's place and compared it with \
             {synced} of the {needed} other holders a complete answer needs ({} live){why}",
            node.id,
            others.len(),
        ),
    ))
}

/// Refuses reads of a space this node is still catching up on (and makes
/// sure the catch-up runs): the router then asks the next holder.
fn check_caught_up(node: &Node, space: &str) -> Result<(), Status> {
    // Cut off from the cluster, the local copy is all there is: it is
    // served, marked degraded.
    if node.router.partition().partitioned {
        return Ok(());
    }
    // A space placed only on nodes that are down (this one not among them)
    // has its data there: answering from here would answer "empty".
    if let Some(why) = node.placed_only_on_down_nodes(space) {
        return Err(mnemo_router::error::refusal("holders-down", why));
    }
    if node.ready(space) {
        return Ok(());
    }
    node.sync.enqueue(crate::antientropy::Job::CatchUp {
        space: space.to_owned(),
    });
    metrics::counter!("mnemo_catching_up_refusals_total").increment(1);
    Err(mnemo_router::error::refusal(
        "catching-up",
        format!(
            "node {} is catching up on space {space:?} with its other holders; ask another holder",
            node.id
        ),
    ))
}

/// Reads one memory (or what it was merged into) from the local copy.
/// `found` says whether either was there; the edge turns "neither" into
/// NOT_FOUND (a holder lacking it is not an error to route around).
/// The caller checked the space is readable here (`check_readable`).
pub(crate) fn get(node: &Node, r: &v1::GetRequest) -> v1::GetResponse {
    let memory = node.store.get(&r.space, &r.id);
    let merged_into = match memory {
        Some(_) => None,
        None => node.store.merged_into(&r.space, &r.id),
    };
    v1::GetResponse {
        space: r.space.clone(),
        served_by: node.id.clone(),
        memory: memory.map(|m| memory_to_wire(&m)),
        merged_into: merged_into.map(|m| memory_to_wire(&m)),
    }
}

/// Most memories one `List` page holds.
pub(crate) const MAX_LIST: u32 = 1000;

/// A page of the local copy of a space, in id order. The caller checked
/// the space is readable here (`check_readable`).
pub(crate) fn list(node: &Node, r: &v1::ListRequest) -> v1::ListResponse {
    let limit = r.limit.unwrap_or(100) as usize;
    let page = node.store.list(&r.space, &r.cursor, limit);
    let next_cursor = if page.len() == limit {
        page.last().map(|m| m.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    let totals = node.store.stats(&r.space);
    v1::ListResponse {
        space: r.space.clone(),
        served_by: node.id.clone(),
        memories: page.iter().map(|m| memory_to_wire(m)).collect(),
        next_cursor,
        total_memories: totals.as_ref().map_or(0, |t| t.memories),
        total_forgotten: totals.as_ref().map_or(0, |t| t.tombstones),
    }
}

/// Ranks the local copy of a space; confidences are scaled by the
/// context's penalty; in the primary's place, after overlapping the write
/// quorum.
pub(crate) async fn recall(
    node: &Node,
    r: v1::RecallRequest,
    context: Context,
) -> Result<v1::RecallResponse, Status> {
    let penalty = context.penalty;
    let k = validate::k(r.k).map_err(NodeError::from)?;
    // The penalty applies before the caller's filter: a memory is kept when
    // its *returned* confidence, `confidence · penalty`, reaches the minimum.
    let min = r.min_confidence.unwrap_or(0.0) / penalty.max(f32::MIN_POSITIVE);
    check_readable(node, &r.space, context).await?;
    let scan = move |store: &mnemo_store::Store, r: &v1::RecallRequest| {
        store.recall(
            &r.space,
            Cue {
                text: &r.cue,
                embedding: &r.cue_embedding,
                include_unmatched: r.include_unmatched,
                tags: &r.tags,
            },
            k,
            min,
        )
    };
    // A large scan takes milliseconds, which the other requests of this
    // worker must not wait for (a small one is cheaper than moving it). On
    // a multi-threaded runtime the scan stays here and hands the worker's
    // other tasks to another worker (this task's other work, such as the
    // other calls of a hop stream, waits). A serving thread's runtime has
    // no other worker: the scan goes to its blocking pool (a few threads,
    // see `crate::serving`) and the thread, this task included, goes on.
    let found = if node.store.len(&r.space) <= INLINE_SCAN_LIMIT {
        scan(&node.store, &r)
    } else if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(|| scan(&node.store, &r))
    } else {
        // The request's copy is nothing beside a scan this large.
        let (store, request) = (node.store.clone(), r.clone());
        tokio::task::spawn_blocking(move || scan(&store, &request))
            .await
            .map_err(|e| {
                tracing::error!(space = %r.space, error = %e, "a recall's scan failed");
                Status::internal("the recall's scan failed; the node logged why")
            })?
    };
    let found = found.map_err(NodeError::from)?;
    Ok(v1::RecallResponse {
        served_by: node.id.clone(),
        fallback: false,
        degraded: penalty < 1.0,
        memories: found.iter().map(|s| scored_to_wire(s, penalty)).collect(),
        space_memories: node.store.len(&r.space) as u64,
        space: r.space,
    })
}

pub(crate) async fn consolidate(
    node: &Node,
    r: v1::ConsolidateRequest,
    threshold: f32,
) -> Result<v1::ConsolidateResponse, Status> {
    let how = mnemo_store::Consolidate {
        threshold,
        dry_run: r.dry_run,
        decay: node.config.decay,
        // The consolidation's own timestamp: the only clock decay reads,
        // carried in what it writes, so every holder agrees.
        as_of_ms: mnemo_store::now_ms(),
    };
    let report = node
        .store
        .consolidate_with(&r.space, how)
        .await
        .map_err(NodeError::from)?;
    if !r.dry_run {
        let replicas = node.replicas_of(&r.space);
        node.replicator.send(&r.space, &report.elements, &replicas);
    }
    Ok(v1::ConsolidateResponse {
        space: r.space,
        served_by: node.id.clone(),
        merged: report
            .merged
            .iter()
            .map(|c| v1::Merge {
                id: c.merged.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
                inputs: c.inputs.clone(),
                confidence: c.merged.as_ref().map_or(0.0, Memory::current_confidence),
                content: c
                    .merged
                    .as_ref()
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        memories_before: report.before,
        memories_after: report.after,
        dry_run: r.dry_run,
        decayed: report
            .decayed
            .iter()
            .map(|d| v1::DecayedMemory {
                id: d.id.clone(),
                confidence: d.confidence,
            })
            .collect(),
    })
}
