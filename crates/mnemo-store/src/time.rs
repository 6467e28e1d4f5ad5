//! The store's one wall-clock read: when a write is first taken (a memory's
//! creation time, a tombstone's) and when a recall is stamped. Decay never
//! reads it: it reads the consolidation's own timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

/// This node's wall clock, in milliseconds since the Unix epoch (0 before
/// 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
