//! The applier: brings redb up to date with the log, off the write path.
//!
//! The writer hands over batches' changes once they are durable in the
//! log, gathered for a while (see [`crate::writer`]). The applier applies
//! whatever has queued up in one non-durable redb commit (many batches
//! share the cost of copying a page), and on request
//! makes redb durable (a checkpoint), after which the log file whose records
//! it covers may start over. Nothing reads redb while the node runs: reads
//! are served from memory, and redb is read only at start-up, after the log
//! has been applied to it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use crate::error::Result;
use crate::space::Shared;
use crate::tables;
use crate::wal::Change;

/// What the writer asks of the applier.
pub(crate) enum Task {
    /// Apply a batch's changes (already durable in the log).
    Apply(Vec<Change>),
    /// Make everything applied so far durable, then answer with the log
    /// file this covers.
    Checkpoint(usize),
}

/// What the applier tells the writer.
pub(crate) enum Done {
    /// Every record of this log file is durable in redb.
    Checkpointed(usize),
    /// redb could not be written; the log keeps everything.
    Failed(String),
}

pub(crate) fn run(shared: &Arc<Shared>, tasks: &Receiver<Task>, done: &Sender<Done>) {
    let mut pending: Vec<Change> = Vec::new();
    while let Ok(task) = tasks.recv() {
        // Take everything queued, up to a checkpoint request.
        let mut next = Some(task);
        let mut checkpoint = None;
        while let Some(task) = next.take() {
            match task {
                Task::Apply(changes) => pending.extend(changes),
                Task::Checkpoint(file) => {
                    checkpoint = Some(file);
                    break;
                }
            }
            next = tasks.try_recv().ok();
        }
        let durability = if checkpoint.is_some() {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        match apply(shared, &pending, durability) {
            Ok(()) => pending.clear(),
            Err(e) => {
                let why = format!("applying the log to the database failed: {e}");
                tracing::error!("{why}; the log keeps every acknowledged write");
                let _ = done.send(Done::Failed(why));
                return;
            }
        }
        if let Some(file) = checkpoint {
            metrics::counter!("mnemo_store_checkpoints_total").increment(1);
            if done.send(Done::Checkpointed(file)).is_err() {
                return;
            }
        }
    }
}

fn apply(shared: &Shared, changes: &[Change], durability: redb::Durability) -> Result<()> {
    if changes.is_empty() && matches!(durability, redb::Durability::None) {
        return Ok(());
    }
    tables::apply(&shared.db, changes, durability)?;
    Ok(())
}
