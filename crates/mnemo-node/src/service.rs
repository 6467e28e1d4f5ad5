//! The public `mnemo.v1.Mnemo` service: the edge where every request is
//! validated before anything else happens.

use std::sync::Arc;

use mnemo_proto::v1::{self, mnemo_server::Mnemo};
use mnemo_store::{Cue, Memory, validate};
use tonic::{Request, Response, Status};

use crate::convert::scored_to_wire;
use crate::error::NodeError;
use crate::node::Node;

/// The gRPC face of a [`Node`].
#[derive(Clone)]
pub struct MnemoService {
    node: Arc<Node>,
}

impl MnemoService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        MnemoService { node }
    }
}

fn min_confidence(value: Option<f32>) -> Result<f32, NodeError> {
    let v = value.unwrap_or(0.0);
    validate::unit_interval("min_confidence", v)?;
    Ok(v)
}

#[tonic::async_trait]
impl Mnemo for MnemoService {
    async fn remember(
        &self,
        request: Request<v1::RememberRequest>,
    ) -> Result<Response<v1::RememberResponse>, Status> {
        let r = request.into_inner();
        let memory = Memory {
            id: r.id,
            content: r.content,
            embedding: r.embedding,
            confidence: r.confidence.unwrap_or(1.0),
            created_at_ms: 0,
            tags: r.tags,
        };
        validate::memory(&r.space, &memory).map_err(NodeError::from)?;
        let (id, outcome) = self
            .node
            .store
            .remember(&r.space, memory)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(v1::RememberResponse {
            id,
            space: r.space,
            served_by: self.node.id.clone(),
            created: outcome.changed,
            seq: outcome.seq,
        }))
    }

    async fn recall(
        &self,
        request: Request<v1::RecallRequest>,
    ) -> Result<Response<v1::RecallResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        validate::cue(&r.cue, &r.cue_embedding).map_err(NodeError::from)?;
        let k = validate::k(r.k).map_err(NodeError::from)?;
        let min = min_confidence(r.min_confidence)?;
        let found = tokio::task::block_in_place(|| {
            self.node.store.recall(
                &r.space,
                Cue {
                    text: &r.cue,
                    embedding: &r.cue_embedding,
                },
                k,
                min,
            )
        })
        .map_err(NodeError::from)?;
        Ok(Response::new(v1::RecallResponse {
            space: r.space,
            served_by: self.node.id.clone(),
            fallback: false,
            degraded: false,
            memories: found.iter().map(|s| scored_to_wire(s, 1.0)).collect(),
        }))
    }

    async fn forget(
        &self,
        request: Request<v1::ForgetRequest>,
    ) -> Result<Response<v1::ForgetResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        validate::id(&r.id).map_err(NodeError::from)?;
        let outcome = self
            .node
            .store
            .forget(&r.space, &r.id)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(v1::ForgetResponse {
            space: r.space,
            id: r.id,
            served_by: self.node.id.clone(),
            existed: outcome.existed,
        }))
    }

    async fn consolidate(
        &self,
        request: Request<v1::ConsolidateRequest>,
    ) -> Result<Response<v1::ConsolidateResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        let threshold = r
            .threshold
            .unwrap_or(self.node.config.consolidate_threshold);
        validate::threshold(threshold).map_err(NodeError::from)?;
        let report = self
            .node
            .store
            .consolidate(&r.space, threshold)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(v1::ConsolidateResponse {
            space: r.space,
            served_by: self.node.id.clone(),
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
        }))
    }

    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        let r = request.into_inner();
        validate::query_spaces(&r.spaces).map_err(NodeError::from)?;
        validate::cue(&r.cue, &r.cue_embedding).map_err(NodeError::from)?;
        let k = validate::k(r.k).map_err(NodeError::from)?;
        let min = min_confidence(r.min_confidence)?;
        let mut memories = Vec::new();
        let mut failures = Vec::new();
        for space in &r.spaces {
            let cue = Cue {
                text: &r.cue,
                embedding: &r.cue_embedding,
            };
            match tokio::task::block_in_place(|| self.node.store.recall(space, cue, k, min)) {
                Ok(found) => memories.extend(found.iter().map(|s| {
                    let w = scored_to_wire(s, 1.0);
                    v1::SpaceMemory {
                        space: space.clone(),
                        memory: w.memory,
                        score: w.score,
                        served_by: self.node.id.clone(),
                    }
                })),
                Err(e) => failures.push(v1::SpaceFailure {
                    space: space.clone(),
                    error: e.to_string(),
                }),
            }
        }
        Ok(Response::new(merge_query(memories, failures, k, false)))
    }

    async fn locate(
        &self,
        request: Request<v1::LocateRequest>,
    ) -> Result<Response<v1::LocateResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        Ok(Response::new(v1::LocateResponse {
            space: r.space,
            primary: Some(self.node.self_ref()),
            replicas: Vec::new(),
            epoch: 0,
        }))
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(self.node.status()))
    }
}

/// Sorts gathered memories best first (ties: space, then id), keeps `k`.
pub(crate) fn merge_query(
    mut memories: Vec<v1::SpaceMemory>,
    failures: Vec<v1::SpaceFailure>,
    k: usize,
    degraded: bool,
) -> v1::QueryResponse {
    memories.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then_with(|| {
            (&a.space, a.memory.as_ref().map(|m| &m.id))
                .cmp(&(&b.space, b.memory.as_ref().map(|m| &m.id)))
        })
    });
    memories.truncate(k);
    v1::QueryResponse {
        memories,
        partial: !failures.is_empty(),
        failed_spaces: failures.iter().map(|f| f.space.clone()).collect(),
        failures,
        degraded,
    }
}
