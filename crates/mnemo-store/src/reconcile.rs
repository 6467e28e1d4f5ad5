//! Anti-entropy between two holders of a space: range-based set
//! reconciliation (negentropy; Meyer, "Range-Based Set Reconciliation",
//! 2023) over the space's element ids (see [`crate::set`]).
//!
//! The initiator splits its sorted ids into ranges and sends a fingerprint
//! per range; the responder answers with its own fingerprints or, for small
//! ranges, the ids themselves; ranges that match drop out. Each round trip
//! narrows the ranges that differ, so the bytes exchanged grow with the
//! difference (times a log of the set size), not with the set: two holders
//! of 100 000 elements that agree exchange a few hundred bytes.
//!
//! The transport is the caller's: [`reconcile`] takes a function that
//! delivers one message to the responder, which answers it with
//! [`respond`]. The responder keeps no state between messages.

use std::future::Future;

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use crate::error::{Result, StoreError};
use crate::set::ElementId;

/// Largest reconciliation message, in bytes, either way: well under the
/// 4 MiB gRPC message limit; a larger difference takes more round trips.
pub const FRAME_LIMIT: u64 = 512 * 1024;
/// Most round trips of one reconciliation. Each narrows the differing
/// ranges about 16-fold, so a million elements settle in well under ten;
/// a peer that keeps a session going past this is broken or hostile.
pub const MAX_ROUNDS: u32 = 64;

/// What two holders found different, and what finding it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// Elements the initiator has and the responder lacks.
    pub have: Vec<ElementId>,
    /// Elements the responder has and the initiator lacks.
    pub need: Vec<ElementId>,
    /// Round trips made.
    pub rounds: u32,
    /// Reconciliation bytes sent by the initiator.
    pub sent: u64,
    /// Reconciliation bytes received from the responder.
    pub received: u64,
}

/// An error of the reconciliation itself or of the caller's transport.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<E> {
    /// A message could not be built or read (a bug, or a hostile peer).
    #[error("reconciliation failed: {0}")]
    Protocol(String),
    /// The transport failed.
    #[error(transparent)]
    Transport(E),
}

/// Runs the initiator's side against `storage` (a sealed view, see
/// [`crate::Store::reconciliation`]) until both sides know the difference.
pub async fn reconcile<E, F, Fut>(
    storage: &NegentropyStorageVector,
    mut exchange: F,
) -> Result<Difference, ReconcileError<E>>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, E>>,
{
    let protocol = |e: negentropy::Error| ReconcileError::Protocol(e.to_string());
    let mut session = Negentropy::borrowed(storage, FRAME_LIMIT).map_err(protocol)?;
    let mut message = session.initiate().map_err(protocol)?;
    let mut out = Difference::default();
    let (mut have, mut need): (Vec<Id>, Vec<Id>) = (Vec::new(), Vec::new());
    loop {
        out.rounds += 1;
        if out.rounds > MAX_ROUNDS {
            return Err(ReconcileError::Protocol(format!(
                "no agreement after {MAX_ROUNDS} round trips"
            )));
        }
        out.sent += message.len() as u64;
        let reply = exchange(message).await.map_err(ReconcileError::Transport)?;
        out.received += reply.len() as u64;
        match session
            .reconcile_with_ids(&reply, &mut have, &mut need)
            .map_err(protocol)?
        {
            Some(next) => message = next,
            None => break,
        }
    }
    out.have = have.into_iter().map(|id| *id).collect();
    out.need = need.into_iter().map(|id| *id).collect();
    Ok(out)
}

/// Answers one message of an initiator from `storage`.
pub fn respond(storage: &NegentropyStorageVector, message: &[u8]) -> Result<Vec<u8>> {
    let invalid = |e: negentropy::Error| {
        StoreError::invalid("message", format!("is not a reconciliation message: {e}"))
    };
    let mut session = Negentropy::borrowed(storage, FRAME_LIMIT).map_err(invalid)?;
    session.reconcile(message).map_err(invalid)
}
