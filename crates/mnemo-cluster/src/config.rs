//! Configuration and SWIM timing.
//!
//! SWIM (Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent
//! Infection-style Process Group Membership Protocol", DSN 2002) detects
//! failures by probing one random member per *probe period*: a direct ping,
//! then after *probe RTT* without an ack, `k` indirect pings through other
//! members. A member that fails the whole cycle becomes *Suspect*; if it
//! does not refute the suspicion (by gossiping a higher incarnation) within
//! the *suspicion period* it is declared *Down*. foca
//! (<https://github.com/caio/foca>) implements this as a sans-I/O state
//! machine; [`crate::runtime`] drives it over UDP.
//!
//! Defaults ([`SwimTiming::default`]) aim at declaring a killed node down in
//! about 2 s on loopback or a LAN:
//!
//! | setting                 | default | foca's `new_lan` |
//! | ----------------------- | ------- | ---------------- |
//! | `probe_period`          | 500 ms  | 1 s              |
//! | `probe_rtt`             | 200 ms  | 500 ms           |
//! | `num_indirect_probes`   | 3       | 3                |
//! | `suspect_to_down_after` | 1 s     | 4 s (small clusters) |
//! | `remove_down_after`     | 30 s    | 15 min           |
//! | `max_packet_size`       | 1400 B  | 1400 B           |
//!
//! Worst case for a crash: up to one probe period until the dead member is
//! picked (foca walks members round-robin in shuffled order, so with `n`
//! members a given one is probed at least once every `n` periods per
//! prober, but every live member probes), then `probe_period` for the cycle
//! and `suspect_to_down_after` of suspicion: ≈ 1.5–2.5 s in a small cluster.
//!
//! **False-positive risk.** These settings are aggressive. foca has no
//! Lifeguard (Hashicorp's local-health extension that slows down a prober
//! that is itself overloaded), so a member whose process stalls for more
//! than ~1.5 s (GC-like pauses, a saturated CPU on a 2-core box, a long
//! blocking call on the runtime thread) or whose network drops packets for
//! that long can be declared down although it is alive. We compensate with
//! a suspicion period of two probe periods and with three indirect probes;
//! and the damage of a false positive is bounded: the wrongly downed member
//! learns about it (`notify_down_members`), renews its identity
//! ([`crate::Identity`] bumps its incarnation) and rejoins within a probe
//! period or two. On a WAN or a loaded host raise `probe_rtt` and
//! `suspect_to_down_after` (foca's `Config::new_wan` is a good start).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::partition::DEFAULT_HOLD;
use crate::seal::GossipKey;

/// SWIM timing knobs passed to foca. See the module docs for defaults and
/// their trade-offs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimTiming {
    /// How often a random member is probed. Default 500 ms.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before indirect probes. Must be
    /// below `probe_period`. Default 200 ms.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly. Default 3.
    pub num_indirect_probes: NonZeroUsize,
    /// Suspicion period before `Down`. Default 1 s.
    pub suspect_to_down_after: Duration,
    /// How long a `Down` member is remembered before it is removed from the
    /// view. Default 30 s.
    pub remove_down_after: Duration,
    /// Largest gossip datagram foca produces and accepts (the wire adds one
    /// type byte, plus a [`crate::seal::TAG_LEN`]-byte tag with a
    /// [`MembershipConfig::gossip_key`]). Default 1400 B.
    pub max_packet_size: NonZeroUsize,
}

impl Default for SwimTiming {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            num_indirect_probes: NonZeroUsize::new(3).expect("non-zero"),
            suspect_to_down_after: Duration::from_secs(1),
            remove_down_after: Duration::from_secs(30),
            max_packet_size: NonZeroUsize::new(1400).expect("non-zero"),
        }
    }
}

impl SwimTiming {
    /// foca's configuration: `new_lan` for the sizing-dependent parts
    /// (transmissions, periodic gossip), then our timing on top.
    pub(crate) fn to_foca(&self, cluster_size: usize) -> foca::Config {
        let size = NonZeroU32::new(cluster_size.clamp(1, u32::MAX as usize) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let mut config = foca::Config::new_lan(size);
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = self.num_indirect_probes;
        config.suspect_to_down_after = self.suspect_to_down_after;
        config.remove_down_after = Some(self.remove_down_after);
        config.max_packet_size = self.max_packet_size;
        // Tell members we consider down, so a false positive renews and
        // rejoins instead of talking into the void.
        config.notify_down_members = true;
        // Ask one peer for more peers every 5 s (default 30 s) so a node
        // that joined through a single seed learns the whole roster fast.
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::MIN,
        });
        // Knock on down members' doors every 10 s (default 65 s): heals a
        // partition without operator help.
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        config
    }
}

/// How to start a [`crate::Membership`].
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This node's id (`--id`).
    pub id: String,
    /// UDP address to bind (`--listen`); port 0 picks a free port, see
    /// [`crate::MembershipHandle::local_addr`].
    pub listen: SocketAddr,
    /// Address other members use to reach us; defaults to the bound address.
    /// Required when `listen` is an unspecified IP (`0.0.0.0`, `::`).
    pub advertise: Option<SocketAddr>,
    /// Seeds (`--join`), as `host:port`; IPs or DNS names. Names are
    /// re-resolved every `seed_retry`, so a restarted seed with a new IP is
    /// found again. Our own address may be listed; it is skipped.
    pub seeds: Vec<String>,
    /// Expected cluster size for partition detection; `None` means "the
    /// largest membership ever seen".
    pub expected_size: Option<usize>,
    /// How often seeds that are not alive members are resolved and
    /// announced to. Default 5 s.
    pub seed_retry: Duration,
    /// Partition detector hysteresis. Default 1.5 s.
    pub partition_hold: Duration,
    /// SWIM timing.
    pub timing: SwimTiming,
    /// Incarnation of this start; `None` uses the current Unix time in
    /// milliseconds (so a restart always wins over the previous process).
    pub incarnation: Option<u64>,
    /// Cluster secret authenticating every gossip datagram (see
    /// [`crate::seal`]); all members must share it. `None` gossips in
    /// plaintext without authentication: only for trusted networks
    /// (`--insecure`).
    pub gossip_key: Option<GossipKey>,
}

impl MembershipConfig {
    /// A config with defaults for everything but id and listen address.
    pub fn new(id: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            id: id.into(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            expected_size: None,
            seed_retry: Duration::from_secs(5),
            partition_hold: DEFAULT_HOLD,
            timing: SwimTiming::default(),
            incarnation: None,
            gossip_key: None,
        }
    }

    /// Adds seeds (builder style).
    #[must_use]
    pub fn with_seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// Sets the expected cluster size (builder style).
    #[must_use]
    pub fn with_expected_size(mut self, size: usize) -> Self {
        self.expected_size = Some(size);
        self
    }

    /// Sets the cluster secret that authenticates gossip (builder style).
    #[must_use]
    pub fn with_gossip_key(mut self, key: GossipKey) -> Self {
        self.gossip_key = Some(key);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("node id must not be empty".into());
        }
        let t = &self.timing;
        if t.probe_rtt.is_zero() || t.probe_rtt >= t.probe_period {
            return Err("probe_rtt must be non-zero and below probe_period".into());
        }
        if t.suspect_to_down_after.is_zero() {
            return Err("suspect_to_down_after must be non-zero".into());
        }
        if self.seed_retry.is_zero() {
            return Err("seed_retry must be non-zero".into());
        }
        if let Some(a) = self.advertise
            && (a.ip().is_unspecified() || a.port() == 0)
        {
            return Err(format!("advertise address {a} is not routable"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_become_a_valid_foca_config() {
        let config = SwimTiming::default().to_foca(3);
        assert_eq!(config.probe_period, Duration::from_millis(500));
        assert_eq!(config.probe_rtt, Duration::from_millis(200));
        assert_eq!(config.remove_down_after, Some(Duration::from_secs(30)));
        assert_eq!(config.max_packet_size.get(), 1400);
    }

    #[test]
    fn validation_rejects_rtt_above_period_and_empty_id() {
        let mut c = MembershipConfig::new("n1", "127.0.0.1:0".parse().unwrap());
        assert!(c.validate().is_ok());
        c.timing.probe_rtt = c.timing.probe_period;
        assert!(c.validate().is_err());
        let c = MembershipConfig::new("", "127.0.0.1:0".parse().unwrap());
        assert!(c.validate().is_err());
    }
}
