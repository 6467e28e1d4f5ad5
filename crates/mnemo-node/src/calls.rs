//! The public calls routed to the holders of one space (remember, forget,
//! recall, get, list): what differs between them. The shape they share,
//! checks, then "serve a forwarded request" or "route or forward", is
//! [`MnemoService::handle`](crate::service::MnemoService).

use std::future::Future;

use mnemo_proto::v1::{self, mnemo_client::MnemoClient};
use mnemo_router::{RouterError, RoutingDecision, Served};
use mnemo_store::validate;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::NodeError;
use crate::local;
use crate::node::Node;
use crate::security::Caller;

/// What a call served here may use besides its request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// When the caller's time runs out (its deadline, or the default,
    /// counted from the request's arrival): a write's quorum wait ends
    /// then, so the caller hears how far the write got.
    pub(crate) until: tokio::time::Instant,
    /// Factor for the confidences a recall returns (1 unless partitioned).
    pub(crate) penalty: f32,
    /// Served by a holder other than the primary, in its place: a read
    /// first overlaps the write quorum (`local::check_readable`).
    pub(crate) fallback: bool,
}

/// Largest `k` of a recall sent over a hop stream.
const MAX_K_OVER_HOP: u32 = 100;

/// One public call routed to a holder of its space.
pub(crate) trait Routed: prost::Message + Default + Clone + Send + Sync + 'static {
    /// Its answer.
    type Answer: prost::Message + Default + Send;
    /// Its name, for metrics and on the hop stream.
    const OPERATION: &'static str;
    /// Whether it is forwarded over the peer's hop stream (see `hop.rs`),
    /// else as a unary call of its own: calls whose answer may be large go
    /// on their own, since one large answer would hold up every call behind
    /// it on a shared stream.
    fn over_hop(&self) -> bool {
        true
    }

    /// The space it is about.
    fn space(&self) -> &str;

    /// Refuses what is invalid or not allowed to `caller`, naming the field
    /// and the limit; may complete the request (a write's id).
    fn check(&mut self, caller: &Caller) -> Result<(), Status>;

    /// A write (to the primary, then the next holder) or a read (the
    /// primary with replica fallback).
    const WRITES: bool;

    /// Where it goes.
    fn route(node: &Node, space: &str) -> Result<RoutingDecision, RouterError> {
        if Self::WRITES {
            node.router.route_store(space)
        } else {
            node.router.route_recall(space)
        }
    }

    /// Served from this node's own copy.
    fn serve(
        node: &Node,
        request: Self,
        context: Context,
    ) -> impl Future<Output = Result<Self::Answer, Status>> + Send;

    /// The same call on a peer.
    fn call(
        peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> impl Future<Output = Result<Response<Self::Answer>, Status>> + Send;

    /// A routed answer as the caller gets it (a recall says whether a
    /// fallback served it).
    fn served(served: Served<Self::Answer>) -> Self::Answer {
        served.value
    }
}

pub(crate) fn check<T>(result: mnemo_store::Result<T>) -> Result<T, Status> {
    result.map_err(|e| NodeError::from(e).into())
}

pub(crate) fn check_ack(ack: i32) -> Result<(), Status> {
    if v1::Ack::try_from(ack).is_err() {
        return Err(Status::invalid_argument(format!(
            "invalid ack: {ack} is not primary (0) or quorum (1)"
        )));
    }
    Ok(())
}

pub(crate) fn validate_cue(
    cue: &str,
    embedding: &[f32],
    k: Option<u32>,
    min: Option<f32>,
) -> Result<(), Status> {
    check(validate::cue(cue, embedding))?;
    check(validate::k(k))?;
    check(validate::unit_interval(
        "min_confidence",
        min.unwrap_or(0.0),
    ))
}

/// Sets `fallback` and `degraded` of a recall answer from how it was served.
pub(crate) fn recall_answer(served: Served<v1::RecallResponse>) -> v1::RecallResponse {
    let mut r = served.value;
    r.fallback |= served.fallback;
    r.degraded |= served.degraded;
    r
}

impl Routed for v1::RememberRequest {
    type Answer = v1::RememberResponse;
    const OPERATION: &'static str = "remember";
    const WRITES: bool = true;

    fn space(&self) -> &str {
        &self.space
    }

    fn check(&mut self, caller: &Caller) -> Result<(), Status> {
        check(validate::memory_fields(
            &self.space,
            &self.id,
            &self.content,
            &self.embedding,
            self.confidence.unwrap_or(1.0),
            &self.tags,
        ))?;
        check_ack(self.ack)?;
        caller.may_write(&self.space)?;
        if self.id.is_empty() {
            // Named here, at the edge, so a retried or forwarded write
            // stays one write (writes are idempotent by id).
            self.id = uuid::Uuid::now_v7().to_string();
        }
        Ok(())
    }

    fn serve(
        node: &Node,
        request: Self,
        context: Context,
    ) -> impl Future<Output = Result<Self::Answer, Status>> + Send {
        local::remember(node, request, context.until)
    }

    async fn call(
        mut peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> Result<Response<Self::Answer>, Status> {
        peer.remember(request).await
    }

    /// `created` says whether this request stored the memory. After an
    /// attempt whose effect is unknown (it timed out, its connection broke)
    /// the holder that answers may have the memory from that very attempt,
    /// by replication, and find it "already stored": it is taken as this
    /// request's own. (Only a replay of a memory stored before, whose first
    /// attempt also failed that way, is then called created.)
    fn served(served: Served<Self::Answer>) -> Self::Answer {
        let mut answer = served.value;
        answer.created |= served.uncertain;
        answer
    }
}

impl Routed for v1::ForgetRequest {
    type Answer = v1::ForgetResponse;
    const OPERATION: &'static str = "forget";
    const WRITES: bool = true;

    fn space(&self) -> &str {
        &self.space
    }

    fn check(&mut self, caller: &Caller) -> Result<(), Status> {
        check(validate::space(&self.space))?;
        check(validate::id(&self.id))?;
        check_ack(self.ack)?;
        caller.may_write(&self.space)
    }

    fn serve(
        node: &Node,
        request: Self,
        context: Context,
    ) -> impl Future<Output = Result<Self::Answer, Status>> + Send {
        local::forget(node, request, context.until)
    }

    async fn call(
        mut peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> Result<Response<Self::Answer>, Status> {
        peer.forget(request).await
    }
}

impl Routed for v1::RecallRequest {
    type Answer = v1::RecallResponse;
    const OPERATION: &'static str = "recall";
    const WRITES: bool = false;

    /// The usual few; a recall of hundreds of memories goes on its own.
    fn over_hop(&self) -> bool {
        self.k.is_none_or(|k| k <= MAX_K_OVER_HOP)
    }

    fn space(&self) -> &str {
        &self.space
    }

    fn check(&mut self, caller: &Caller) -> Result<(), Status> {
        check(validate::space(&self.space))?;
        validate_cue(&self.cue, &self.cue_embedding, self.k, self.min_confidence)?;
        check(validate::tags(&self.tags))?;
        caller.may_read(&self.space)
    }

    fn serve(
        node: &Node,
        request: Self,
        context: Context,
    ) -> impl Future<Output = Result<Self::Answer, Status>> + Send {
        local::recall(node, request, context)
    }

    async fn call(
        mut peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> Result<Response<Self::Answer>, Status> {
        peer.recall(request).await
    }

    fn served(served: Served<Self::Answer>) -> Self::Answer {
        recall_answer(served)
    }
}

impl Routed for v1::GetRequest {
    type Answer = v1::GetResponse;
    const OPERATION: &'static str = "get";
    const WRITES: bool = false;

    fn space(&self) -> &str {
        &self.space
    }

    fn check(&mut self, caller: &Caller) -> Result<(), Status> {
        check(validate::space(&self.space))?;
        check(validate::id(&self.id))?;
        caller.may_read(&self.space)
    }

    /// A `get` of nothing is NOT_FOUND, said by the holder that looked.
    async fn serve(node: &Node, request: Self, context: Context) -> Result<Self::Answer, Status> {
        local::check_readable(node, &request.space, context).await?;
        let answer = local::get(node, &request);
        if answer.memory.is_none() && answer.merged_into.is_none() {
            return Err(Status::not_found(format!(
                "space {:?} has no memory {:?} (served by {})",
                request.space, request.id, answer.served_by
            )));
        }
        Ok(answer)
    }

    async fn call(
        mut peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> Result<Response<Self::Answer>, Status> {
        peer.get(request).await
    }
}

impl Routed for v1::ListRequest {
    type Answer = v1::ListResponse;
    const OPERATION: &'static str = "list";
    const WRITES: bool = false;

    /// A page holds up to 1000 memories with their embeddings.
    fn over_hop(&self) -> bool {
        false
    }

    fn space(&self) -> &str {
        &self.space
    }

    fn check(&mut self, caller: &Caller) -> Result<(), Status> {
        check(validate::space(&self.space))?;
        caller.may_read(&self.space)?;
        if !self.cursor.is_empty() && validate::id(&self.cursor).is_err() {
            return Err(Status::invalid_argument(
                "invalid cursor: is not a memory id (pass a page's next_cursor)",
            ));
        }
        if let Some(limit) = self.limit
            && !(1..=local::MAX_LIST).contains(&limit)
        {
            return Err(Status::invalid_argument(format!(
                "invalid limit: is {limit}; it must be 1..={}",
                local::MAX_LIST
            )));
        }
        Ok(())
    }

    async fn serve(node: &Node, request: Self, context: Context) -> Result<Self::Answer, Status> {
        local::check_readable(node, &request.space, context).await?;
        Ok(local::list(node, &request))
    }

    async fn call(
        mut peer: MnemoClient<Channel>,
        request: Request<Self>,
    ) -> Result<Response<Self::Answer>, Status> {
        peer.list(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(created: bool, uncertain: bool) -> Served<v1::RememberResponse> {
        Served {
            value: v1::RememberResponse {
                created,
                ..Default::default()
            },
            node: "n2".into(),
            local: false,
            fallback: uncertain,
            hedged: false,
            attempts: if uncertain { 2 } else { 1 },
            uncertain,
            confidence_penalty: 1.0,
            degraded: false,
        }
    }

    /// A write that found its memory already stored after an attempt whose
    /// effect is unknown counts it as its own; otherwise the answer stands.
    #[test]
    fn a_write_after_an_uncertain_attempt_counts_what_it_finds_as_created() {
        let created = |c, u| v1::RememberRequest::served(remembered(c, u)).created;
        assert!(created(false, true));
        assert!(!created(false, false));
        assert!(created(true, false));
        assert!(created(true, true));
    }
}
