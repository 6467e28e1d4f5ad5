//! Bearer tokens: what a client without a certificate may touch.
//!
//! A token names the spaces it opens (patterns where `*` stands for any run
//! of characters, so `alice-*` opens every space whose name starts with
//! `alice-`), whether it may write, and when it stops working. It is signed
//! with an HMAC key derived from the cluster key in the certificates
//! directory, so every node checks it on its own, with no lookup:
//!
//! ```text
//! mnemo1.<base64url(JSON claims)>.<base64url(HMAC-SHA256 over the first two parts)>
//! ```
//!
//! Anyone who holds the cluster key can make tokens; that is the operator
//! (`mnemo token create`) and the nodes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// What every token starts with (and the version of its format).
const PREFIX: &str = "mnemo1.";
/// Longest token accepted; a real one is a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Most space patterns in one token.
pub const MAX_PATTERNS: usize = 64;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Space-name patterns the token opens (`*` matches any run of
    /// characters).
    pub spaces: Vec<String>,
    /// True when the token may only read.
    #[serde(default)]
    pub read_only: bool,
    /// Seconds since the Unix epoch after which the token is refused;
    /// `None`: it does not expire.
    #[serde(default)]
    pub expires: Option<u64>,
}

/// Why a token was refused. The messages go back to the client as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format, or damaged.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// Signed with other key material (another cluster), or altered.
    #[error("the token's signature does not match this cluster's key")]
    BadSignature,
    /// Past its expiry.
    #[error("the token expired at {0} (seconds since the Unix epoch)")]
    Expired(u64),
}

/// Checks a space pattern: the characters of a space name plus `*`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 128 {
        return Err(format!(
            "space pattern {pattern:?} must be 1 to 128 characters"
        ));
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*')))
    {
        return Err(format!(
            "space pattern {pattern:?} has {c:?}; patterns use A-Z a-z 0-9 . _ - and *"
        ));
    }
    Ok(())
}

/// True when `name` matches `pattern`, where `*` stands for any run of
/// characters (including none) and everything else for itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut pieces = pattern.split('*');
    // `split` always yields at least one piece.
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = pieces.collect();
    let Some(last) = pieces.pop() else {
        // No `*`: the whole name must be the pattern.
        return rest.is_empty();
    };
    // Each middle piece at its earliest place leaves the most room for
    // the others; the last must end the name.
    for piece in pieces {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Claims {
    /// True when the token opens `space`.
    pub fn covers(&self, space: &str) -> bool {
        self.spaces.iter().any(|p| matches(p, space))
    }
}

/// The key tokens are signed and checked with.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The token key derived from the cluster key.
    pub fn new(cluster_key: &[u8]) -> Self {
        TokenKey(hmac::Key::new(
            hmac::HMAC_SHA256,
            &super::derive(cluster_key, b"mnemo token v1"),
        ))
    }

    /// A signed token granting `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).expect("claims serialise");
        let signed = format!("{PREFIX}{}", B64.encode(body));
        let tag = hmac::sign(&self.0, signed.as_bytes());
        format!("{signed}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of `token` if this key signed it and it has not expired
    /// at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 4096 bytes"));
        }
        if !token.starts_with(PREFIX) {
            return Err(TokenError::Malformed("it does not start with \"mnemo1.\""));
        }
        let (signed, tag) = token
            .rsplit_once('.')
            .filter(|(signed, _)| signed.len() > PREFIX.len())
            .ok_or(TokenError::Malformed("it has no signature"))?;
        let tag = B64
            .decode(tag)
            .map_err(|_| TokenError::Malformed("its signature is not base64url"))?;
        hmac::verify(&self.0, signed.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        // Signed by us: what follows can only fail for a token from a
        // future format.
        let body = B64
            .decode(&signed[PREFIX.len()..])
            .map_err(|_| TokenError::Malformed("its claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&body)
            .map_err(|_| TokenError::Malformed("its claims are not understood"))?;
        if let Some(at) = claims.expires
            && now >= at
        {
            return Err(TokenError::Expired(at));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::new(&[b; 32])
    }

    fn claims(spaces: &[&str]) -> Claims {
        Claims {
            spaces: spaces.iter().map(|s| (*s).to_owned()).collect(),
            read_only: false,
            expires: None,
        }
    }

    #[test]
    fn a_token_round_trips_and_only_its_key_accepts_it() {
        let c = Claims {
            read_only: true,
            expires: Some(2_000),
            ..claims(&["alice-*", "shared"])
        };
        let t = key(1).sign(&c);
        assert_eq!(key(1).verify(&t, 1_999), Ok(c));
        assert_eq!(key(2).verify(&t, 0), Err(TokenError::BadSignature));
        assert_eq!(key(1).verify(&t, 2_000), Err(TokenError::Expired(2_000)));
    }

    #[test]
    fn any_change_to_a_token_is_refused() {
        let t = key(1).sign(&claims(&["alice-*"]));
        for i in 0..t.len() {
            for c in ['A', 'z', '.', '_', '0'] {
                let mut forged: Vec<char> = t.chars().collect();
                if forged[i] == c {
                    continue;
                }
                forged[i] = c;
                let forged: String = forged.into_iter().collect();
                assert!(key(1).verify(&forged, 0).is_err(), "accepted {forged}");
            }
        }
        for n in 0..t.len() {
            assert!(
                key(1).verify(&t[..n], 0).is_err(),
                "accepted a prefix of {n}"
            );
        }
    }

    #[test]
    fn patterns() {
        let yes = [
            ("alice-*", "alice-notes"),
            ("alice-*", "alice-"),
            ("*", "anything"),
            ("exact", "exact"),
            ("a*b*c", "abc"),
            ("a*b*c", "a-b-b-c"),
            ("*-notes", "bob-notes"),
            ("a*a", "aa"),
        ];
        let no = [
            ("alice-*", "alice"),
            ("alice-*", "bob-alice-x"),
            ("exact", "exactly"),
            ("a*b*c", "acb"),
            ("a*a", "a"),
            ("*-notes", "notes"),
        ];
        for (p, n) in yes {
            assert!(matches(p, n), "{p} should match {n}");
        }
        for (p, n) in no {
            assert!(!matches(p, n), "{p} should not match {n}");
        }
        assert!(check_pattern("alice-*").is_ok());
        assert!(check_pattern("alice/x").unwrap_err().contains("'/'"));
        assert!(check_pattern("").is_err());
    }

    /// A plain regular-expression-free oracle: dynamic programming over
    /// pattern and name.
    fn oracle(p: &[u8], n: &[u8]) -> bool {
        let mut ok = vec![vec![false; n.len() + 1]; p.len() + 1];
        ok[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=n.len() {
                ok[i][j] = if p[i - 1] == b'*' {
                    ok[i - 1][j] || (j > 0 && ok[i][j - 1])
                } else {
                    j > 0 && ok[i - 1][j - 1] && p[i - 1] == n[j - 1]
                };
            }
        }
        ok[p.len()][n.len()]
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_oracle(p in "[ab*]{0,8}", n in "[ab]{0,10}") {
            prop_assert_eq!(matches(&p, &n), oracle(p.as_bytes(), n.as_bytes()));
        }

        #[test]
        fn arbitrary_text_is_refused_without_panic(t in ".{0,300}") {
            prop_assert!(key(1).verify(&t, 0).is_err());
        }
    }
}
