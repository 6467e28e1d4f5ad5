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
    while let Ok(first) = tasks.recv() {
        // Take everything queued, up to a checkpoint request.
        let mut changes: Vec<Change> = Vec::new();
        let mut checkpoint = None;
        let mut next = Some(first);
        while let Some(task) = next {
            match task {
                Task::Apply(more) => changes.extend(more),
                Task::Checkpoint(file) => {
                    checkpoint = Some(file);
                    break;
                }
            }
            next = tasks.try_recv().ok();
        }
        let durability = match checkpoint {
            Some(_) => redb::Durability::Immediate,
            None if changes.is_empty() => continue,
            None => redb::Durability::None,
        };
        if let Err(e) = tables::apply(&shared.db, &changes, durability) {
            let why = format!("applying the log to the database failed: {e}");
            tracing::error!("{why}; the log keeps every acknowledged write");
            let _ = done.send(Done::Failed(why));
            return;
        }
        if let Some(file) = checkpoint {
            metrics::counter!("mnemo_store_checkpoints_total").increment(1);
            if done.send(Done::Checkpointed(file)).is_err() {
                return;
            }
        }
    }
}
