//! The clock of a running node, and the injected time and randomness of
//! [`mnemo_routing::clock`] (re-exported here).
//!
//! `clippy.toml` bans std's and tokio's `Instant::now`, `SystemTime::now`,
//! and tokio's `sleep` and `timeout` everywhere in this crate but here.

use std::time::Duration;

pub use mnemo_routing::clock::*;

/// tokio's clock (honours paused time in tests). Origin: construction.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place tokio's clock is read"
    )]
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    #[allow(clippy::disallowed_methods, reason = "the one place tokio sleeps")]
    fn sleep_until(&self, at: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.origin + at))
    }
}
