//! The node-to-node `mnemo.v1.Internal` service: merging what other holders
//! send, and answering anti-entropy (reconciliation, fetching elements,
//! listing spaces). Everything received is checked as strictly as a
//! client's request; an invalid element is refused on its own and the rest
//! applied, so one bad element can never stall a space.

use std::sync::Arc;

use mnemo_proto::v1::{self, internal_server::Internal};
use mnemo_store::{ElementId, validate};
use tonic::{Request, Response, Status};

use crate::convert::{element_from_wire, element_to_wire, summary_from_wire};
use crate::error::NodeError;
use crate::node::Node;
use crate::replication::MAX_CALL_BYTES;

/// Most elements accepted in one `Merge` call.
pub const MAX_MERGE_ELEMENTS: usize = 16_384;
/// Most element ids in one `Fetch` call.
pub const MAX_FETCH_IDS: usize = 16_384;
/// Largest reconciliation message accepted.
const MAX_RECONCILE_BYTES: usize = 1024 * 1024;
/// Most element ids a `Compare` answer lists (256 KiB of them); beyond
/// it the caller is told to reconcile.
pub const MAX_COMPARE_IDS: usize = 8192;

/// The internal gRPC face of a [`Node`].
#[derive(Clone)]
pub struct InternalService {
    node: Arc<Node>,
}

impl InternalService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        InternalService { node }
    }
}

fn invalid(field: &'static str, reason: String) -> Status {
    NodeError::Invalid { field, reason }.into()
}

/// Refuses `field` holding more than `limit` `unit`s.
fn at_most(field: &'static str, n: usize, limit: usize, unit: &str) -> Result<(), Status> {
    if n > limit {
        return Err(invalid(
            field,
            format!("has {n} {unit}; the limit is {limit}"),
        ));
    }
    Ok(())
}

fn check_space(space: &str) -> Result<(), Status> {
    validate::space(space).map_err(|e| NodeError::from(e).into())
}

#[tonic::async_trait]
impl Internal for InternalService {
    async fn merge(
        &self,
        request: Request<v1::MergeRequest>,
    ) -> Result<Response<v1::MergeResponse>, Status> {
        let r = request.into_inner();
        check_space(&r.space)?;
        if r.elements.is_empty() {
            return Err(invalid("elements", "is empty; send at least one".into()));
        }
        at_most("elements", r.elements.len(), MAX_MERGE_ELEMENTS, "elements")?;
        let (mut refused, mut refused_ids) = (Vec::new(), Vec::new());
        let mut elements = Vec::with_capacity(r.elements.len());
        for (i, e) in r.elements.into_iter().enumerate() {
            if let Some(e) = element_from_wire(e) {
                elements.push(e);
            } else {
                refused.push(format!("element {i}: has neither a memory nor a tombstone"));
                refused_ids.push(String::new());
            }
        }
        let merged = self
            .node
            .store
            .merge(&r.space, elements)
            .await
            .map_err(NodeError::from)?;
        for (id, why) in merged.refused {
            refused.push(format!("{id:?}: {why}"));
            refused_ids.push(id);
        }
        if !refused.is_empty() {
            metrics::counter!("mnemo_merge_refused_total").increment(refused.len() as u64);
            tracing::warn!(space = %r.space, from = %r.from_node, ?refused, "refused elements from a peer");
        }
        Ok(Response::new(v1::MergeResponse {
            applied: merged.applied,
            unchanged: merged.unchanged,
            conflicts: merged.conflicts,
            refused,
            refused_ids,
        }))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let r = request.into_inner();
        check_space(&r.space)?;
        at_most("message", r.message.len(), MAX_RECONCILE_BYTES, "bytes")?;
        let view = self.node.store.reconciliation(&r.space);
        let message =
            mnemo_store::reconcile::respond(&view, &r.message).map_err(NodeError::from)?;
        Ok(Response::new(v1::ReconcileResponse { message }))
    }

    async fn compare(
        &self,
        request: Request<v1::CompareRequest>,
    ) -> Result<Response<v1::CompareResponse>, Status> {
        let r = request.into_inner();
        check_space(&r.space)?;
        let theirs = summary_from_wire(&r.digests, &r.counts)
            .map_err(|(field, reason)| invalid(field, reason))?;
        let ids = self
            .node
            .store
            .differing_ids(&r.space, &theirs, MAX_COMPARE_IDS);
        Ok(Response::new(v1::CompareResponse {
            too_different: ids.is_none(),
            ids: ids.iter().flatten().map(|id| id.to_vec()).collect(),
        }))
    }

    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let r = request.into_inner();
        check_space(&r.space)?;
        at_most("ids", r.ids.len(), MAX_FETCH_IDS, "ids")?;
        let ids: Vec<ElementId> = r
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                ElementId::try_from(id.as_slice()).map_err(|_| {
                    invalid("ids", format!("id {i} is {} bytes; ids are 32", id.len()))
                })
            })
            .collect::<Result<_, _>>()?;
        // The answer stops under the message limit (one element always
        // goes); the caller asks again for the rest.
        let (mut bytes, mut answered, mut elements) = (0, 0, Vec::new());
        for id in &ids {
            let found: Vec<v1::Element> = self
                .node
                .store
                .elements(&r.space, std::slice::from_ref(id))
                .into_iter()
                .map(element_to_wire)
                .collect();
            let size: usize = found
                .iter()
                .map(|e| prost::Message::encoded_len(e) + 8)
                .sum();
            if bytes + size > MAX_CALL_BYTES && answered > 0 {
                break;
            }
            bytes += size;
            answered += 1;
            elements.extend(found);
        }
        Ok(Response::new(v1::FetchResponse { elements, answered }))
    }

    async fn spaces(
        &self,
        _request: Request<v1::SpacesRequest>,
    ) -> Result<Response<v1::SpacesResponse>, Status> {
        Ok(Response::new(v1::SpacesResponse {
            spaces: self.node.store.space_names(),
        }))
    }

    type HopStream = crate::hop::HopAnswers;

    async fn hop(
        &self,
        request: Request<tonic::Streaming<v1::HopCall>>,
    ) -> Result<Response<Self::HopStream>, Status> {
        Ok(Response::new(crate::hop::serve(
            Arc::clone(&self.node),
            request,
        )))
    }
}
