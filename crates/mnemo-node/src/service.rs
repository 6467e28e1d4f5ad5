//! The public `mnemo.v1.Mnemo` service: the edge. Every request is
//! validated here, then routed (DESIGN §3): remember and forget to the
//! primary, recall to the primary with replica fallback, consolidate local
//! only, query scattered per space and gathered.
//!
//! Every call routed to the holders of one space (remember, forget, recall,
//! get, list) has one shape, `MnemoService::handle`: checks, then either
//! serve a request another node forwarded (`MnemoService::serve_forwarded`)
//! or route it and forward it where it belongs (`forward.rs`). What differs
//! per call is its `Routed` impl (`calls.rs`); the work on this node's own
//! copy is `local.rs`.

use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::v1::{self, mnemo_server::Mnemo};
use mnemo_router::router::DEFAULT_DEADLINE;
use mnemo_store::validate;
use tonic::{Request, Response, Status};

use crate::calls::{Context, Routed, check, recall_answer, validate_cue};
use crate::forward::{self, Hop, Peer, exec_status, is_forwarded, route_status};
use crate::local;
use crate::node::Node;
use crate::security::Caller;

mod stream;

/// Most requests of one stream or batch handled at once.
pub(crate) use stream::IN_FLIGHT as STREAM_IN_FLIGHT;

/// Where a request comes from: the caller, whether another node forwarded
/// it, and the deadline it carries.
pub(crate) struct Origin {
    /// The operation's name, for metrics.
    pub(crate) operation: &'static str,
    pub(crate) caller: Caller,
    pub(crate) forwarded: bool,
    /// A forwarded read sent in the primary's place (`mnemo-fallback`).
    pub(crate) fallback: bool,
    pub(crate) deadline: Option<Duration>,
}

impl Origin {
    fn of<T>(request: &Request<T>, operation: &'static str) -> Origin {
        Origin {
            operation,
            caller: Caller::of(request),
            forwarded: is_forwarded(request),
            fallback: request.metadata().contains_key(mnemo_proto::FALLBACK),
            deadline: forward::deadline(request),
        }
    }
}

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

    /// The one shape of a call routed to the holders of one space: the
    /// node must have joined; the request is checked (invalid or not
    /// allowed: refused before anything else); then a forwarded request is
    /// served here or refused, any other is routed.
    async fn handle<Q: Routed>(&self, request: Request<Q>) -> Result<Response<Q::Answer>, Status> {
        let from = Origin::of(&request, Q::OPERATION);
        let answer = self.handle_one(&from, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    /// [`MnemoService::handle`] for one request from `from` (a unary call,
    /// or one message of a stream).
    pub(crate) async fn handle_one<Q: Routed>(
        &self,
        from: &Origin,
        mut r: Q,
    ) -> Result<Q::Answer, Status> {
        self.node.ensure_joined()?;
        self.injected_latency().await;
        r.check(&from.caller)?;
        // The caller's time runs from here, wherever the call is served.
        let until = tokio::time::Instant::now() + from.deadline.unwrap_or(DEFAULT_DEADLINE);
        if from.forwarded {
            self.serve_forwarded(r, until, from.fallback).await
        } else {
            self.route(from, &r, until).await
        }
    }

    /// A request another node forwarded: served from this node's copy if
    /// it holds the space in its view (during a partition: as placed over
    /// the whole cluster), else refused. Never sent on: two nodes whose
    /// views differ answer instead of bouncing a request between them, and
    /// the refusal is no fault of this node (the router moves on).
    async fn serve_forwarded<Q: Routed>(
        &self,
        r: Q,
        until: tokio::time::Instant,
        fallback: bool,
    ) -> Result<Q::Answer, Status> {
        let node = &self.node;
        if !node.accepts_writes_for(r.space()) {
            return Err(self.refuse_forwarded(r.space()));
        }
        let context = Context {
            until,
            penalty: node.router.partition().penalty(),
            fallback,
        };
        Q::serve(node, r, context).await
    }

    /// A request from a client: routed, then served here or forwarded to
    /// the node the decision names (see `forward.rs`).
    async fn route<Q: Routed>(
        &self,
        from: &Origin,
        r: &Q,
        until: tokio::time::Instant,
    ) -> Result<Q::Answer, Status> {
        let node = &self.node;
        let decision = Q::route(node, r.space()).map_err(route_status)?;
        let context = |fallback| Context {
            until,
            penalty: decision.confidence_penalty(),
            fallback,
        };
        let hop = Hop {
            from: &node.id,
            caller: &from.caller,
            operation: from.operation,
            hops: &node.hops,
        };
        // Only a read answered elsewhere needs to know it (`Context::fallback`).
        let placed_primary = if Q::WRITES {
            None
        } else {
            node.placed_primary(r.space())
        };
        let served = forward::run(
            &node.router,
            (&decision, placed_primary.as_ref()),
            from.deadline,
            r,
            hop,
            |r, fallback| Q::serve(node, r, context(fallback)),
            Peer::send,
        )
        .await?;
        Ok(Q::served(served))
    }

    /// The test-only delay of a node made slow on purpose.
    async fn injected_latency(&self) {
        let delay = self.node.config.inject_latency;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// A forwarded request is served here or refused; never sent on. The
    /// refusal is not a fault of this node: the router moves on.
    fn refuse_forwarded(&self, space: &str) -> Status {
        mnemo_router::error::refusal(
            "not-a-holder",
            format!(
                "node {} does not hold space {space:?} in its view; \
                 the forwarding node's view differs, retry shortly",
                self.node.id
            ),
        )
    }
}

#[tonic::async_trait]
impl Mnemo for MnemoService {
    async fn remember(
        &self,
        request: Request<v1::RememberRequest>,
    ) -> Result<Response<v1::RememberResponse>, Status> {
        self.handle(request).await
    }

    type RememberStreamStream = stream::RememberAnswers;

    async fn remember_stream(
        &self,
        request: Request<tonic::Streaming<v1::RememberRequest>>,
    ) -> Result<Response<Self::RememberStreamStream>, Status> {
        self.node.ensure_joined()?;
        Ok(Response::new(stream::remember(self.clone(), request)))
    }

    async fn recall(
        &self,
        request: Request<v1::RecallRequest>,
    ) -> Result<Response<v1::RecallResponse>, Status> {
        self.handle(request).await
    }

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::GetResponse>, Status> {
        self.handle(request).await
    }

    async fn list(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        self.handle(request).await
    }

    async fn forget(
        &self,
        request: Request<v1::ForgetRequest>,
    ) -> Result<Response<v1::ForgetResponse>, Status> {
        self.handle(request).await
    }

    async fn consolidate(
        &self,
        request: Request<v1::ConsolidateRequest>,
    ) -> Result<Response<v1::ConsolidateResponse>, Status> {
        self.node.ensure_joined()?;
        let caller = Caller::of(&request);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        caller.may_write(&r.space)?;
        let node = &self.node;
        let threshold = r.threshold.unwrap_or(node.config.consolidate_threshold);
        check(validate::threshold(threshold))?;
        // Local only (never routed), and only on the space's primary (or,
        // during a partition, a holder as placed): one node consolidates, so
        // two holders do not merge the same memories into different sets.
        node.router
            .route_consolidation(&r.space)
            .map_err(route_status)?;
        if !node.consolidates(&r.space) {
            let primary = node.location(&r.space).primary.unwrap_or_default();
            return Err(Status::failed_precondition(format!(
                "node {} holds a replica of space {:?}; consolidation runs on the space's \
                 primary {} ({}), e.g. with --node {}",
                node.id, r.space, primary.id, primary.addr, primary.addr
            )));
        }
        local::consolidate(node, r, threshold)
            .await
            .map(Response::new)
    }

    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        self.node.ensure_joined()?;
        let caller = Caller::of(&request);
        let deadline = forward::deadline(&request);
        let r = request.into_inner();
        check(validate::query_spaces(&r.spaces))?;
        caller.may_read_all(&r.spaces)?;
        validate_cue(&r.cue, &r.cue_embedding, r.k, r.min_confidence)?;
        check(validate::tags(&r.tags))?;
        let k = check(validate::k(r.k))?;
        let node = &self.node;
        let until = tokio::time::Instant::now() + deadline.unwrap_or(DEFAULT_DEADLINE);
        let result = node
            .router
            .query(&r.spaces, deadline, |space, target| {
                let sub = v1::RecallRequest {
                    space: space.to_owned(),
                    cue: r.cue.clone(),
                    cue_embedding: r.cue_embedding.clone(),
                    k: r.k,
                    min_confidence: r.min_confidence,
                    include_unmatched: r.include_unmatched,
                    tags: r.tags.clone(),
                };
                let placed_primary = node.placed_primary(space);
                let fallback =
                    forward::in_primarys_place(placed_primary.as_ref(), &target, &node.id);
                let context = move |fallback| Context {
                    until,
                    penalty: node.router.partition().penalty(),
                    fallback,
                };
                forward::dispatch(
                    target,
                    sub,
                    Hop {
                        from: &node.id,
                        caller: &caller,
                        operation: "query",
                        hops: &node.hops,
                    },
                    fallback,
                    move |sub, fallback| local::recall(node, sub, context(fallback)),
                    Peer::send,
                )
            })
            .await
            .map_err(route_status)?;
        let degraded = result.parts.iter().any(|(_, s)| s.degraded);
        let empty_spaces = result
            .parts
            .iter()
            // A holder too old to count says 0: trust what it returned.
            .filter(|(_, s)| s.value.space_memories == 0 && s.value.memories.is_empty())
            .map(|(space, _)| space.clone())
            .collect();
        let memories = result
            .parts
            .into_iter()
            .flat_map(|(space, served)| {
                let answer = recall_answer(served);
                answer.memories.into_iter().map(move |m| v1::SpaceMemory {
                    space: space.clone(),
                    memory: m.memory,
                    score: m.score,
                    served_by: answer.served_by.clone(),
                })
            })
            .collect();
        let failures = result
            .failed
            .into_iter()
            .map(|(space, e)| v1::SpaceFailure {
                space,
                error: exec_status(e).message().to_owned(),
            })
            .collect();
        let mut answer = merge_query(memories, failures, k, degraded);
        answer.empty_spaces = empty_spaces;
        Ok(Response::new(answer))
    }

    async fn locate(
        &self,
        request: Request<v1::LocateRequest>,
    ) -> Result<Response<v1::LocateResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        caller.may_read(&r.space)?;
        let placement = self.node.location(&r.space);
        Ok(Response::new(v1::LocateResponse {
            space: r.space,
            primary: placement.primary,
            replicas: placement.replicas,
            epoch: self.node.router.table().topology().epoch(),
        }))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Caller::of(&request).may_operate("status")?;
        Ok(Response::new(self.node.status()))
    }

    async fn decommission(
        &self,
        request: Request<v1::DecommissionRequest>,
    ) -> Result<Response<v1::DecommissionResponse>, Status> {
        Caller::of(&request).may_operate("decommission")?;
        let node = &self.node;
        tracing::info!(id = %node.id, "decommissioning: handing spaces over before leaving");
        let spaces = crate::antientropy::hand_over_all(node).await.map_err(|e| {
            Status::unavailable(format!(
                "node {} could not hand its spaces over ({}); nothing was removed, retry once \
                 the other holders are reachable",
                node.id,
                e.message()
            ))
        })?;
        // Stopping leaves the cluster once this answer is on its way.
        let _ = node.stop.send(true);
        Ok(Response::new(v1::DecommissionResponse {
            node_id: node.id.clone(),
            spaces,
        }))
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
        empty_spaces: Vec::new(),
    }
}
