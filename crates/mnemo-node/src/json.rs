//! The JSON face of mnemo's answers: one shape for the HTTP API and the
//! command line's `--json`, so a field has the same name everywhere.
//! Built from the gRPC answers, never from anything else.

use mnemo_proto::v1;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// A memory.
#[derive(Debug, Serialize, ToSchema)]
pub struct Memory {
    /// Id, unique in its space.
    pub id: String,
    /// The text.
    pub content: String,
    /// How much to trust it now, in [0, 1]: `written_confidence` lowered by
    /// decay while nobody recalls it (and during a partition).
    pub confidence: f32,
    /// How sure the writer was, in [0, 1].
    pub written_confidence: f32,
    /// Milliseconds since the Unix epoch, set by the node that took it.
    pub created_at_ms: i64,
    /// When a recall last returned it (recorded at most hourly; absent:
    /// never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recalled_at_ms: Option<i64>,
    /// The latest decay consolidation applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decay: Option<Decay>,
    /// Labels a recall may filter on.
    pub tags: Vec<String>,
    /// For a memory consolidation made: its inputs, as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedInput>,
}

/// A decay of confidence as of one consolidation: the confidence halves for
/// every `half_life_ms` the memory went unused before `as_of_ms`, down to
/// `floor`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decay {
    /// The consolidation's timestamp.
    pub as_of_ms: i64,
    /// Idle time that halves the confidence.
    pub half_life_ms: i64,
    /// The lowest confidence decay brings a memory to.
    pub floor: f32,
}

/// One input of a consolidation, as it was.
#[derive(Debug, Serialize, ToSchema)]
pub struct MergedInput {
    /// Its id (now forgotten).
    pub id: String,
    /// Its text.
    pub content: String,
    /// Its confidence.
    pub confidence: f32,
    /// When it was written.
    pub created_at_ms: i64,
    /// Its tags.
    pub tags: Vec<String>,
}

impl From<&v1::Memory> for Memory {
    fn from(m: &v1::Memory) -> Self {
        Memory {
            id: m.id.clone(),
            content: m.content.clone(),
            confidence: m.confidence,
            written_confidence: m.written_confidence.unwrap_or(m.confidence),
            created_at_ms: m.created_at_ms,
            recalled_at_ms: (m.recalled_at_ms != 0).then_some(m.recalled_at_ms),
            decay: m.decay.map(|d| Decay {
                as_of_ms: d.as_of_ms,
                half_life_ms: d.half_life_ms,
                floor: d.floor,
            }),
            tags: m.tags.clone(),
            merged_from: m
                .merged_from
                .iter()
                .map(|i| MergedInput {
                    id: i.id.clone(),
                    content: i.content.clone(),
                    confidence: i.confidence,
                    created_at_ms: i.created_at_ms,
                    tags: i.tags.clone(),
                })
                .collect(),
        }
    }
}

fn memory(m: Option<&v1::Memory>) -> Memory {
    Memory::from(m.unwrap_or(&v1::Memory::default()))
}

/// A memory with its score for a cue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scored {
    /// The memory.
    #[serde(flatten)]
    pub memory: Memory,
    /// How well it matches (higher is better; comparable within one answer).
    pub score: f32,
}

/// A write's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Remembered {
    /// The memory's id (generated when none was given).
    pub id: String,
    /// Its space.
    pub space: String,
    /// The node that took the write.
    pub served_by: String,
    /// False when the same write was already there (writes are idempotent).
    pub created: bool,
}

impl From<&v1::RememberResponse> for Remembered {
    fn from(r: &v1::RememberResponse) -> Self {
        Remembered {
            id: r.id.clone(),
            space: r.space.clone(),
            served_by: r.served_by.clone(),
            created: r.created,
        }
    }
}

/// A recall's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recalled {
    /// The space.
    pub space: String,
    /// The node whose copy answered.
    pub served_by: String,
    /// A replica answered because the primary did not.
    pub fallback: bool,
    /// Partitioned: local data only, confidences lowered.
    pub degraded: bool,
    /// Best first.
    pub memories: Vec<Scored>,
    /// Live memories in the space (0: it does not exist or all were
    /// forgotten).
    pub space_memories: u64,
}

impl From<&v1::RecallResponse> for Recalled {
    fn from(r: &v1::RecallResponse) -> Self {
        Recalled {
            space: r.space.clone(),
            served_by: r.served_by.clone(),
            fallback: r.fallback,
            degraded: r.degraded,
            memories: r
                .memories
                .iter()
                .map(|s| Scored {
                    memory: memory(s.memory.as_ref()),
                    score: s.score,
                })
                .collect(),
            space_memories: r.space_memories,
        }
    }
}

/// A forget's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forgot {
    /// The space.
    pub space: String,
    /// The forgotten id.
    pub id: String,
    /// The node that took the forget.
    pub served_by: String,
    /// False when no such memory was there (it stays forgotten anyway).
    pub existed: bool,
    /// False when the space held nothing before.
    pub space_existed: bool,
}

impl From<&v1::ForgetResponse> for Forgot {
    fn from(r: &v1::ForgetResponse) -> Self {
        Forgot {
            space: r.space.clone(),
            id: r.id.clone(),
            served_by: r.served_by.clone(),
            existed: r.existed,
            space_existed: r.space_existed,
        }
    }
}

/// One memory by id, or what consolidation merged it into.
#[derive(Debug, Serialize, ToSchema)]
pub struct Got {
    /// The space.
    pub space: String,
    /// The node whose copy answered.
    pub served_by: String,
    /// The memory, when it is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// The memory it was merged into, when consolidation merged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Memory>,
}

impl From<&v1::GetResponse> for Got {
    fn from(r: &v1::GetResponse) -> Self {
        Got {
            space: r.space.clone(),
            served_by: r.served_by.clone(),
            memory: r.memory.as_ref().map(Memory::from),
            merged_into: r.merged_into.as_ref().map(Memory::from),
        }
    }
}

/// A memory as export writes it (one JSON line each) and import reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Exported {
    /// Id.
    pub id: String,
    /// Text.
    pub content: String,
    /// Confidence.
    pub confidence: f32,
    /// Tags.
    pub tags: Vec<String>,
    /// When it was written.
    pub created_at_ms: i64,
    /// Its embedding (the client's, or the built-in one).
    pub embedding: Vec<f32>,
}

impl From<&v1::Memory> for Exported {
    fn from(m: &v1::Memory) -> Self {
        Exported {
            id: m.id.clone(),
            content: m.content.clone(),
            confidence: m.confidence,
            tags: m.tags.clone(),
            created_at_ms: m.created_at_ms,
            embedding: m.embedding.clone(),
        }
    }
}

/// A page of a space's memories, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// The space.
    pub space: String,
    /// The node whose copy answered.
    pub served_by: String,
    /// The memories of this page.
    pub memories: Vec<Exported>,
    /// Pass as `cursor` for the next page; empty after the last.
    pub next_cursor: String,
}

impl From<&v1::ListResponse> for Page {
    fn from(r: &v1::ListResponse) -> Self {
        Page {
            space: r.space.clone(),
            served_by: r.served_by.clone(),
            memories: r.memories.iter().map(Exported::from).collect(),
            next_cursor: r.next_cursor.clone(),
        }
    }
}

/// One merge of a consolidation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Merge {
    /// The merged memory's id.
    pub id: String,
    /// The ids it stands for.
    pub inputs: Vec<String>,
    /// Its confidence.
    pub confidence: f32,
    /// Its text.
    pub content: String,
}

/// A consolidation's answer (or plan, for a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct Consolidated {
    /// The space.
    pub space: String,
    /// The node that consolidated (the primary).
    pub served_by: String,
    /// The merges.
    pub merged: Vec<Merge>,
    /// Live memories before.
    pub memories_before: u64,
    /// Live memories after (or after the plan, for a dry run).
    pub memories_after: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Memories whose confidence decayed (merged ones aside).
    pub decayed: Vec<DecayedMemory>,
}

/// A memory a consolidation decayed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecayedMemory {
    /// Its id.
    pub id: String,
    /// Its confidence after.
    pub confidence: f32,
}

impl From<&v1::ConsolidateResponse> for Consolidated {
    fn from(r: &v1::ConsolidateResponse) -> Self {
        Consolidated {
            space: r.space.clone(),
            served_by: r.served_by.clone(),
            merged: r
                .merged
                .iter()
                .map(|m| Merge {
                    id: m.id.clone(),
                    inputs: m.inputs.clone(),
                    confidence: m.confidence,
                    content: m.content.clone(),
                })
                .collect(),
            memories_before: r.memories_before,
            memories_after: r.memories_after,
            dry_run: r.dry_run,
            decayed: r
                .decayed
                .iter()
                .map(|d| DecayedMemory {
                    id: d.id.clone(),
                    confidence: d.confidence,
                })
                .collect(),
        }
    }
}

/// A memory a query found, with where it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceScored {
    /// The memory and its score.
    #[serde(flatten)]
    pub scored: Scored,
    /// Its space.
    pub space: String,
    /// The node whose copy answered for that space.
    pub served_by: String,
}

/// A space a query could not read.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceFailure {
    /// The space.
    pub space: String,
    /// Why.
    pub error: String,
}

/// A query's answer: the best memories over all spaces, and which spaces
/// failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queried {
    /// Best first, over all spaces.
    pub memories: Vec<SpaceScored>,
    /// True when some spaces failed.
    pub partial: bool,
    /// The spaces that failed.
    pub failed_spaces: Vec<String>,
    /// Why each failed.
    pub failures: Vec<SpaceFailure>,
    /// Some answers came from a partitioned node's local copy.
    pub degraded: bool,
    /// Spaces that hold no memories at all.
    pub empty_spaces: Vec<String>,
}

impl From<&v1::QueryResponse> for Queried {
    fn from(r: &v1::QueryResponse) -> Self {
        Queried {
            memories: r
                .memories
                .iter()
                .map(|s| SpaceScored {
                    scored: Scored {
                        memory: memory(s.memory.as_ref()),
                        score: s.score,
                    },
                    space: s.space.clone(),
                    served_by: s.served_by.clone(),
                })
                .collect(),
            partial: r.partial,
            failed_spaces: r.failed_spaces.clone(),
            failures: r
                .failures
                .iter()
                .map(|f| SpaceFailure {
                    space: f.space.clone(),
                    error: f.error.clone(),
                })
                .collect(),
            degraded: r.degraded,
            empty_spaces: r.empty_spaces.clone(),
        }
    }
}

/// Where a space lives.
#[derive(Debug, Serialize, ToSchema)]
pub struct Located {
    /// The space.
    pub space: String,
    /// Its primary's id.
    pub primary: String,
    /// Its replicas' ids.
    pub replicas: Vec<String>,
    /// Every holder's address, by id.
    pub addresses: std::collections::BTreeMap<String, String>,
    /// The membership epoch this placement was computed at.
    pub epoch: u64,
}

impl From<&v1::LocateResponse> for Located {
    fn from(r: &v1::LocateResponse) -> Self {
        let primary = r.primary.clone().unwrap_or_default();
        Located {
            space: r.space.clone(),
            primary: primary.id.clone(),
            replicas: r.replicas.iter().map(|n| n.id.clone()).collect(),
            addresses: std::iter::once(&primary)
                .chain(&r.replicas)
                .map(|n| (n.id.clone(), n.addr.clone()))
                .collect(),
            epoch: r.epoch,
        }
    }
}

/// What a node sees, as `mnemo status --json` prints it.
pub fn status(r: &v1::StatusResponse) -> Value {
    json!({
        "node_id": r.node_id,
        "addr": r.addr,
        "partition": r.partition,
        "epoch": r.epoch,
        "expected_cluster_size": r.expected_cluster_size,
        "members": r.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "state": m.state})).collect::<Vec<_>>(),
        "breakers": r.breakers.iter().map(|b| json!({"node": b.node, "state": b.state, "consecutive_failures": b.consecutive_failures, "read_latency_ms": b.read_latency_ms, "write_latency_ms": b.write_latency_ms, "slow": b.slow})).collect::<Vec<_>>(),
        "pool": r.pool.iter().map(|p| json!({"node": p.node, "channels": p.channels})).collect::<Vec<_>>(),
        "settled": r.settled,
        "spaces": r.spaces.iter().map(|s| json!({"name": s.name, "memories": s.memories, "tombstones": s.tombstones, "digest": s.digest, "dimension": s.dimension, "catching_up": s.catching_up})).collect::<Vec<_>>(),
        "handoffs": r.handoffs.iter().map(|h| json!({"space": h.space, "peer": h.peer, "kind": h.kind})).collect::<Vec<_>>(),
        "replication": r.replication.iter().map(|p| json!({"node": p.node, "pending": p.pending, "refused": p.refused, "to_repair": p.to_repair})).collect::<Vec<_>>(),
    })
}
