//! The redb tables. redb is the source of truth; everything in memory is
//! rebuilt from these at start-up.

use redb::{Database, TableDefinition};

use crate::error::Result;

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
