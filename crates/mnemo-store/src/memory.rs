//! The records the store keeps, in the form they are written to disk and
//! shipped to replicas (protobuf encoding through `prost`, so old records stay
//! readable when fields are added). The encoding is deterministic, which the
//! merge rule relies on (see [`crate::set::version`]).

/// One immutable memory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Memory {
    /// Client-chosen or generated id, unique within its space.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The text of the memory.
    #[prost(string, tag = "2")]
    pub content: String,
    /// The vector recall scores against. Empty in a request: the store
    /// computes a lexical embedding of `content`.
    #[prost(float, repeated, tag = "3")]
    pub embedding: Vec<f32>,
    /// How much the writer trusts it, in [0, 1].
    #[prost(float, tag = "4")]
    pub confidence: f32,
    /// Milliseconds since the Unix epoch, set when first written.
    #[prost(int64, tag = "5")]
    pub created_at_ms: i64,
    /// Free-form labels.
    #[prost(string, repeated, tag = "6")]
    pub tags: Vec<String>,
    /// Taken by a node cut off from the majority of the cluster: under one
    /// id, it gives way to a memory taken with the majority.
    #[prost(bool, tag = "7")]
    pub minority: bool,
    /// For a memory consolidation made: the memories it stands for, as
    /// they were (their ids are forgotten), sorted by id.
    #[prost(message, repeated, tag = "8")]
    pub merged_from: Vec<MergedInput>,
    // The fields below are the memory's *use*: they change after it is
    // written, and holders join them (see [`crate::decay`]). They must keep
    // the highest tags, in this order, so that the encoding of a memory is
    // the encoding of what was written followed by that of [`Usage`].
    /// When a recall last returned it (milliseconds since the Unix epoch;
    /// 0: never).
    #[prost(int64, tag = "9")]
    pub recalled_at_ms: i64,
    /// The latest decay consolidation applied to it.
    #[prost(message, optional, tag = "10")]
    pub decay: Option<Decay>,
}

/// The use of a memory, encoded as the tail of [`Memory`] (same tags).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Usage {
    /// As [`Memory::recalled_at_ms`].
    #[prost(int64, tag = "9")]
    pub recalled_at_ms: i64,
    /// As [`Memory::decay`].
    #[prost(message, optional, tag = "10")]
    pub decay: Option<Decay>,
}

/// A decay of confidence, as of one consolidation (see [`crate::decay`]).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Decay {
    /// The consolidation's timestamp (milliseconds since the Unix epoch).
    #[prost(int64, tag = "1")]
    pub as_of_ms: i64,
    /// Idle time that halves the confidence, in milliseconds (positive).
    #[prost(int64, tag = "2")]
    pub half_life_ms: i64,
    /// The lowest confidence decay brings a memory to, in [0, 1].
    #[prost(float, tag = "3")]
    pub floor: f32,
}

/// One input of a consolidation, kept in the merged memory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MergedInput {
    /// Its id (now forgotten).
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its text.
    #[prost(string, tag = "2")]
    pub content: String,
    /// Its confidence.
    #[prost(float, tag = "3")]
    pub confidence: f32,
    /// When it was written.
    #[prost(int64, tag = "4")]
    pub created_at_ms: i64,
    /// Its tags.
    #[prost(string, repeated, tag = "5")]
    pub tags: Vec<String>,
}

impl Memory {
    /// How much to trust it now: its written confidence, lowered by decay
    /// if it has been idle (see [`crate::decay`]).
    pub fn current_confidence(&self) -> f32 {
        crate::decay::confidence(self)
    }

    /// When it was last written or recalled.
    pub fn last_used_ms(&self) -> i64 {
        self.created_at_ms.max(self.recalled_at_ms)
    }

    /// Its use, as holders join it.
    pub fn usage(&self) -> Usage {
        Usage {
            recalled_at_ms: self.recalled_at_ms,
            decay: self.decay,
        }
    }

    /// Whether two writes carry the same memory (the time it was stamped
    /// with does not count: a retried write is stamped again; nor does its
    /// use since).
    pub fn same_as(&self, other: &Memory) -> bool {
        self.id == other.id
            && self.content == other.content
            && self.embedding == other.embedding
            && self.confidence.to_bits() == other.confidence.to_bits()
            && self.tags == other.tags
            && self.minority == other.minority
            && self.merged_from == other.merged_from
    }
}

/// A client's write, as the store applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Store a memory.
    Remember(Memory),
    /// Tombstone a memory id.
    Forget(String),
    /// Store a merged memory and tombstone its inputs.
    Consolidate(Consolidation),
}

/// The result of merging memories that say the same thing into one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Consolidation {
    /// The merged memory; its id derives from `inputs`.
    #[prost(message, optional, tag = "1")]
    pub merged: Option<Memory>,
    /// Ids of the merged memories, sorted.
    #[prost(string, repeated, tag = "2")]
    pub inputs: Vec<String>,
}

/// A memory and how well it matched a cue.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// The memory.
    pub memory: std::sync::Arc<Memory>,
    /// Cosine similarity with the cue, in [-1, 1].
    pub score: f32,
}
