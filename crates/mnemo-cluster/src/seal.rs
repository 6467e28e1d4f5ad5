//! Gossip authentication: a cluster-wide secret and the HMAC seal on every
//! datagram.
//!
//! With a [`GossipKey`] every datagram on the wire is `payload || tag`, where
//! `tag` is HMAC-SHA256 (RFC 2104), keyed with the 32 secret bytes, over
//! [`DOMAIN`] followed by the payload. The domain prefix keeps a tag made for
//! gossip from being valid for anything else that might ever share the key.
//! A receiver verifies the tag in constant time ([`ring::hmac::verify`])
//! before the payload reaches foca, so a sender without the key can neither
//! join the cluster nor forge membership updates.
//!
//! What this does *not* give: confidentiality (payloads are readable on the
//! network) and replay protection (a captured datagram can be resent as is;
//! SWIM's incarnation numbers make stale membership claims lose, but a
//! replayed ping still gets an ack).

use ring::hmac;

/// Domain-separation prefix: the MAC covers `DOMAIN || payload`.
pub const DOMAIN: &[u8] = b"mnemo-gossip-v1";

/// Length in bytes of the tag appended to every sealed datagram (a full
/// HMAC-SHA256 output).
pub const TAG_LEN: usize = 32;

/// The shared secret that authenticates gossip between members of one
/// cluster. Every member must be configured with the same 32 bytes; a
/// datagram sealed with another key (or not sealed) is dropped.
///
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct GossipKey {
    key: hmac::Key,
}

impl GossipKey {
    /// A key from 32 secret bytes (e.g. read from a file or decoded from
    /// hex). Use high-entropy bytes, not a password.
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// `payload || tag`: the datagram to put on the wire.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(DOMAIN);
        ctx.update(payload);
        let tag = ctx.sign();
        let mut datagram = Vec::with_capacity(payload.len() + TAG_LEN);
        datagram.extend_from_slice(payload);
        datagram.extend_from_slice(tag.as_ref());
        datagram
    }

    /// The payload of a datagram sealed with this key, or `None` if it is
    /// shorter than a tag or its tag does not verify (untagged, tampered
    /// with, or sealed with another key). The comparison is constant time.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = datagram.split_at(split);
        let mut message = Vec::with_capacity(DOMAIN.len() + payload.len());
        message.extend_from_slice(DOMAIN);
        message.extend_from_slice(payload);
        hmac::verify(&self.key, &message, tag).ok()?;
        Some(payload)
    }
}

impl From<[u8; 32]> for GossipKey {
    fn from(secret: [u8; 32]) -> Self {
        Self::new(secret)
    }
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> GossipKey {
        GossipKey::new([7; 32])
    }

    const PAYLOAD: &[u8] = b"\x01a foca packet";

    #[test]
    fn round_trip() {
        let sealed = key().seal(PAYLOAD);
        assert_eq!(sealed.len(), PAYLOAD.len() + TAG_LEN);
        assert_eq!(&sealed[..PAYLOAD.len()], PAYLOAD);
        assert_eq!(key().open(&sealed), Some(PAYLOAD));
        // An empty payload is sealed and opened too.
        assert_eq!(key().open(&key().seal(b"")), Some(&b""[..]));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let sealed = key().seal(PAYLOAD);
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(key().open(&bad), None, "flip of bit {bit} in byte {byte}");
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let sealed = key().seal(PAYLOAD);
        for len in 0..sealed.len() {
            assert_eq!(key().open(&sealed[..len]), None, "truncated to {len}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(key().open(&longer), None);
    }

    #[test]
    fn another_key_is_refused() {
        let mut other = [7; 32];
        other[31] = 8;
        let sealed = GossipKey::new(other).seal(PAYLOAD);
        assert_eq!(key().open(&sealed), None);
    }

    #[test]
    fn empty_short_and_untagged_input_is_refused() {
        assert_eq!(key().open(b""), None);
        assert_eq!(key().open(&[0; TAG_LEN - 1]), None);
        assert_eq!(key().open(&[0; TAG_LEN]), None);
        assert_eq!(key().open(PAYLOAD), None);
    }

    #[test]
    fn tag_covers_the_domain_prefix() {
        // A plain HMAC of the payload, without our prefix, is not a valid tag.
        let plain = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]), PAYLOAD);
        let mut datagram = PAYLOAD.to_vec();
        datagram.extend_from_slice(plain.as_ref());
        assert_eq!(key().open(&datagram), None);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let shown = format!("{:?}", GossipKey::new([0xab; 32]));
        assert_eq!(shown, "GossipKey(<redacted>)");
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(
            key in any::<[u8; 32]>(),
            payload in prop::collection::vec(any::<u8>(), 0..2048),
        ) {
            let key = GossipKey::new(key);
            let sealed = key.seal(&payload);
            prop_assert_eq!(key.open(&sealed), Some(&payload[..]));
        }

        #[test]
        fn arbitrary_bytes_do_not_open(datagram in prop::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(key().open(&datagram), None);
        }

        #[test]
        fn any_corruption_is_refused(
            payload in prop::collection::vec(any::<u8>(), 0..256),
            index in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            let mut sealed = key().seal(&payload);
            let at = index.index(sealed.len());
            sealed[at] ^= xor;
            prop_assert_eq!(key().open(&sealed), None);
        }
    }
}
