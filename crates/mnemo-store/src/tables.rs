//! The redb tables and the blind writes the log records against them.

use redb::{Database, Table, TableDefinition, WriteTransaction};

use crate::error::{Result, StoreError};
use crate::wal::{Change, Write};

/// Live memories by (space, id), protobuf-encoded.
pub(crate) const MEMORIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memories");
/// Forgotten ids by (space, id), with the wall-clock millisecond the
/// tombstone was first written on this node (kept for a future collection
/// of old tombstones; not part of the merged state).
pub(crate) const TOMBSTONES: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("tombstones");

/// Opens (creating if needed) every table, so readers never find one missing.
pub(crate) fn create(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    txn.open_table(MEMORIES)?;
    txn.open_table(TOMBSTONES)?;
    txn.commit()?;
    Ok(())
}

/// The tables of one write transaction.
pub(crate) struct Tables<'txn> {
    memories: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    tombstones: Table<'txn, (&'static str, &'static str), u64>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Tables {
            memories: txn.open_table(MEMORIES)?,
            tombstones: txn.open_table(TOMBSTONES)?,
        })
    }

    /// Applies one logged change. Each is a blind write: applying it again
    /// changes nothing.
    pub(crate) fn apply(&mut self, change: &Change) -> Result<()> {
        let space = change.space.as_str();
        match &change.write {
            Some(Write::PutMemory(p)) => {
                self.memories
                    .insert((space, p.id.as_str()), p.bytes.as_slice())?;
            }
            Some(Write::PutTombstone(p)) => {
                self.tombstones.insert((space, p.id.as_str()), p.at_ms)?;
            }
            Some(Write::RemoveMemory(id)) => {
                self.memories.remove((space, id.as_str()))?;
            }
            Some(Write::DropSpace(_)) => {
                let rows = (space, "")..(space, "\u{10ffff}");
                self.memories.retain_in(rows.clone(), |_, _| false)?;
                self.tombstones.retain_in(rows, |_, _| false)?;
            }
            None => {
                return Err(StoreError::Storage(redb::Error::Corrupted(
                    "a write-ahead log change without a write".into(),
                )));
            }
        }
        Ok(())
    }
}

/// Applies records to the database with one commit of `durability`.
pub(crate) fn apply<'a>(
    db: &Database,
    changes: impl IntoIterator<Item = &'a Change>,
    durability: redb::Durability,
) -> Result<usize> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)
        .map_err(|e| StoreError::Storage(redb::Error::Io(std::io::Error::other(e.to_string()))))?;
    let mut applied = 0;
    {
        let mut t = Tables::open(&txn)?;
        for change in changes {
            t.apply(change)?;
            applied += 1;
        }
    }
    txn.commit()?;
    Ok(applied)
}
