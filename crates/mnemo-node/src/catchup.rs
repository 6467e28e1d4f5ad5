//! Which spaces this node may answer reads of as complete.
//!
//! A node that placement makes a holder of a space it lacks or holds stale
//! (it just started, came back, a partition healed, a holder died and it
//! inherited the space) must not answer from its copy as if it were
//! complete. It *catches up* first (anti-entropy with the space's other
//! holders, see [`crate::antientropy`]) and until then refuses reads with a
//! refusal the router treats as "try the next holder".
//!
//! The node does not know every space that exists, so readiness is kept as
//! a *settle*: a pass that lists the spaces of every live peer and catches
//! up each one this node holds.
//! - A **full** settle (start, end of a partition) trusts nothing: during
//!   it, only spaces caught up since it began are ready.
//! - A **partial** settle (a member went away, so this node may have
//!   inherited spaces) catches up the spaces it holds now and did not
//!   before (marked stale); everything else stays ready. A space it does
//!   not know at all can only have been inherited by standing in for the
//!   member that went away, which the stand-in rule below covers.
//! - Outside a settle every space is ready except those marked stale (a
//!   catch-up that failed, or a space this node became a holder of). Stale
//!   spaces are caught up in the background until that succeeds, and at
//!   once when a read asks for one.
//! - A **stand-in** (a holder in the live view, but not one of the nodes the
//!   space was placed on over the whole cluster: it stands in for a holder
//!   that is down) has no reason to hold the space at all, so it serves a
//!   space only after a catch-up made while standing in. Membership changes
//!   reset that.
//!
//! Pure bookkeeping: no I/O, no clock.

use std::collections::HashSet;

/// Why a settle started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// Nothing local is trusted (start, partition healed).
    Full,
    /// Only spaces marked stale wait (a member went away).
    Partial,
}

/// Catch-up state of one node.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Bumped by every settle; a settle that finds it moved was superseded.
    generation: u64,
    /// The settle in progress, if any.
    settle: Option<SettleKind>,
    /// Caught up since the current settle began.
    synced: HashSet<String>,
    /// Known to need a catch-up.
    stale: HashSet<String>,
    /// Caught up while standing in, since the last membership change.
    stood_in: HashSet<String>,
}

impl Readiness {
    /// A node that has not settled yet (nothing is ready).
    pub fn starting() -> Self {
        Readiness {
            settle: Some(SettleKind::Full),
            ..Readiness::default()
        }
    }

    /// Whether reads of `space` may be answered from the local copy;
    /// `stand_in`: this node holds it only in place of a node that is down.
    pub fn ready(&self, space: &str, stand_in: bool) -> bool {
        if self.stale.contains(space) || (stand_in && !self.stood_in.contains(space)) {
            return false;
        }
        match self.settle {
            None | Some(SettleKind::Partial) => true,
            Some(SettleKind::Full) => self.synced.contains(space),
        }
    }

    /// The kind of the settle in progress, if any.
    pub fn settling(&self) -> Option<SettleKind> {
        self.settle
    }

    /// True outside a settle.
    pub fn settled(&self) -> bool {
        self.settle.is_none()
    }

    /// Starts a settle; returns its generation.
    pub fn begin(&mut self, kind: SettleKind) -> u64 {
        self.generation += 1;
        self.settle = Some(kind);
        self.synced.clear();
        self.generation
    }

    /// Ends settle `generation` (ignored if a newer one began); `failed`
    /// spaces stay stale.
    pub fn end(&mut self, generation: u64, failed: impl IntoIterator<Item = String>) -> bool {
        if generation != self.generation {
            return false;
        }
        self.settle = None;
        self.synced.clear();
        self.stale.extend(failed);
        true
    }

    /// A catch-up of `space` that started in `generation` failed: stale,
    /// unless a settle began since (it catches the space up itself, and
    /// may have already).
    pub fn failed(&mut self, space: &str, generation: u64) {
        if generation == self.generation {
            self.mark_stale(space);
        }
    }

    /// No longer a holder of `space`: whether it is stale no longer
    /// matters (becoming a holder again marks it anew).
    pub fn forget(&mut self, space: &str) {
        self.stale.remove(space);
    }

    /// Marks `space` as needing a catch-up before it is read again.
    pub fn mark_stale(&mut self, space: &str) {
        self.synced.remove(space);
        self.stale.insert(space.to_owned());
    }

    /// Spaces known to need a catch-up, to be retried in the background
    /// outside a settle (a settle catches them up itself): a space must
    /// not wait for a read to come back into service.
    pub fn to_retry(&self) -> Vec<String> {
        if self.settle.is_some() {
            return Vec::new();
        }
        let mut spaces: Vec<String> = self.stale.iter().cloned().collect();
        spaces.sort();
        spaces
    }

    /// Membership changed: who stands in for whom may have too.
    pub fn membership_changed(&mut self) {
        self.stood_in.clear();
    }

    /// The current generation: a catch-up records it when it starts.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `space` caught up with every other holder, by a catch-up that started
    /// in `generation` (ignored if a settle began since: what it compared
    /// may predate what the new settle is about); `stand_in` as in
    /// [`ready`](Self::ready).
    pub fn caught_up(&mut self, space: &str, stand_in: bool, generation: u64) {
        if generation != self.generation {
            return;
        }
        if stand_in {
            self.stood_in.insert(space.to_owned());
        }
        self.stale.remove(space);
        if self.settle.is_some() {
            self.synced.insert(space.to_owned());
        }
    }

    /// True while settle `generation` is the current one.
    pub fn current(&self, generation: u64) -> bool {
        self.generation == generation && self.settle.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_node_trusts_nothing_until_caught_up() {
        let mut r = Readiness::starting();
        assert!(!r.ready("a", false));
        let g = r.begin(SettleKind::Full);
        assert!(!r.ready("a", false), "a full settle trusts no local copy");
        r.caught_up("a", false, g);
        assert!(r.ready("a", false));
        assert!(
            !r.ready("never-seen", false),
            "unknown spaces wait for the settle"
        );
        assert!(r.end(g, ["b".to_owned()]));
        assert!(
            r.ready("never-seen", false),
            "after a settle, unknown means empty"
        );
        assert!(!r.ready("b", false), "a failed catch-up stays stale");
        r.caught_up("b", false, r.generation());
        assert!(r.ready("b", false));
    }

    #[test]
    fn what_a_settle_failed_to_catch_up_is_retried_until_caught_up() {
        let mut r = Readiness::starting();
        let g = r.begin(SettleKind::Full);
        assert!(r.to_retry().is_empty(), "a settle catches up itself");
        r.caught_up("a", false, g);
        r.end(g, ["c".to_owned(), "b".to_owned()]);
        assert_eq!(r.to_retry(), ["b", "c"]);
        r.caught_up("b", false, r.generation());
        assert_eq!(r.to_retry(), ["c"], "caught up: no longer retried");
        let g = r.begin(SettleKind::Partial);
        assert!(r.to_retry().is_empty());
        r.end(g, []);
        assert_eq!(r.to_retry(), ["c"], "still stale after a settle");
        r.mark_stale("d");
        assert_eq!(r.to_retry(), ["c", "d"], "inherited spaces too");
        r.forget("d");
        assert_eq!(r.to_retry(), ["c"], "no longer held");
    }

    #[test]
    fn a_catch_up_outdated_by_a_settle_does_not_mark_its_space_stale() {
        let mut r = Readiness::starting();
        let g = r.begin(SettleKind::Full);
        r.end(g, []);
        let retry = r.generation();
        let settle = r.begin(SettleKind::Full);
        r.caught_up("a", false, settle);
        r.end(settle, []);
        r.failed("a", retry);
        assert!(r.ready("a", false), "the settle caught it up since");
        r.failed("a", r.generation());
        assert!(!r.ready("a", false));
    }

    #[test]
    fn a_partial_settle_keeps_serving_what_was_held() {
        let mut r = Readiness::starting();
        let g = r.begin(SettleKind::Full);
        r.end(g, []);
        r.mark_stale("inherited");
        let g = r.begin(SettleKind::Partial);
        assert!(r.ready("held", false));
        assert!(!r.ready("inherited", false));
        assert!(
            r.ready("unknown", false),
            "only a stand-in inherits unknown spaces"
        );
        assert!(!r.ready("unknown", true));
        r.end(g, []);
        assert!(!r.ready("inherited", false), "still stale until caught up");
        assert!(r.ready("unknown", false));
    }

    #[test]
    fn a_stand_in_serves_only_after_catching_up_while_standing_in() {
        let mut r = Readiness::starting();
        let g = r.begin(SettleKind::Full);
        r.end(g, []);
        assert!(r.ready("s", false));
        assert!(!r.ready("s", true), "unknown to a stand-in is not empty");
        r.caught_up("s", true, g);
        assert!(r.ready("s", true));
        r.membership_changed();
        assert!(!r.ready("s", true));
    }

    #[test]
    fn a_catch_up_from_before_a_settle_does_not_count_in_it() {
        let mut r = Readiness::starting();
        let before = r.generation();
        let _ = r.begin(SettleKind::Full);
        r.caught_up("s", false, before);
        assert!(!r.ready("s", false));
        r.caught_up("s", false, r.generation());
        assert!(r.ready("s", false));
    }

    #[test]
    fn a_superseded_settle_does_not_end_the_new_one() {
        let mut r = Readiness::starting();
        let old = r.begin(SettleKind::Full);
        let new = r.begin(SettleKind::Full);
        assert!(!r.end(old, []));
        assert!(!r.ready("x", false));
        assert!(r.current(new));
        assert!(r.end(new, []));
        assert!(r.ready("x", false));
    }
}
