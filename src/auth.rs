//! Gateway keys and the admin token.
//!
//! A gateway key is `sk-sy-` followed by 48 hex digits (192 random bits). The gateway stores only
//! its SHA-256 digest; the secret is shown once, when the key is made. Lookups by digest are
//! cached in the isolate for a short TTL ([`KeyCache`]), so steady-state requests touch no storage.

use crate::ids::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Prefix of every gateway key.
pub const KEY_PREFIX: &str = "sk-sy-";

/// What the gateway keeps about a key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The secret's last four characters, to tell keys apart in listings.
    pub last4: String,
    /// Routing defaults for requests made with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<crate::routing::RoutingOptions>,
}

/// A new secret key from 24 random bytes.
pub fn new_secret(random: [u8; 24]) -> String {
    format!("{KEY_PREFIX}{}", hex(&random))
}

/// SHA-256 of a secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hash_bytes(secret.as_bytes())
}

/// Whether a token has the shape of a gateway key, the prefix and 48 lowercase hex digits:
/// anything else is refused without a lookup (no key-store read, no cache entry).
pub fn is_key_shaped(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 48 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// SHA-256 of any bytes, hex (request bodies for idempotency).
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `presented` equals the admin token, in time independent of where they differ.
pub fn admin_token_matches(expected: &str, presented: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Isolate-local cache of key lookups by digest, positive and negative, with a TTL, and the
/// digests revoked in this isolate.
#[derive(Debug, Default)]
pub struct KeyCache {
    /// Keys found, and when they were looked up.
    entries: HashMap<String, (KeyRecord, u64)>,
    /// Digests not found, and when: apart from the keys found, so that a flood of made-up keys
    /// cannot push real ones out.
    misses: HashMap<String, u64>,
    /// Revoked here, and when: refused whatever a lookup says next (KV may still serve the old
    /// entry for a while, and a lookup already in flight read it before the revocation).
    revoked: HashMap<String, u64>,
}

/// Most entries each table holds; past it, expired entries go, then the whole table (bounded
/// memory even when a client floods the gateway with random keys). Keys found, keys not found
/// and revocations are kept apart, so a flood of one cannot wash out the others.
const KEY_CACHE_CAPACITY: usize = 4096;
/// How long a miss (no such key) is trusted at most: a key just created elsewhere should not
/// be refused here much longer than KV takes to show it.
pub const MISS_TTL_MS: u64 = 5_000;

/// How long this isolate holds a revocation at least: Cloudflare documents up to 60 s for a KV
/// change to be seen everywhere; twice that, or the cache TTL if longer.
pub const REVOCATION_HOLD_MS: u64 = 120_000;

/// What the cache knows about a digest.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached<'a> {
    Valid(&'a KeyRecord),
    Invalid,
    Unknown,
}

/// Whether a lookup made at `at` is still trusted at `now_ms`.
fn fresh(at: u64, now_ms: u64, ttl_ms: u64) -> bool {
    now_ms.saturating_sub(at) < ttl_ms
}

/// How long a miss is trusted ([`MISS_TTL_MS`] at most).
fn miss_ttl(ttl_ms: u64) -> u64 {
    ttl_ms.min(MISS_TTL_MS)
}

impl KeyCache {
    pub fn get(&self, hash: &str, now_ms: u64, ttl_ms: u64) -> Cached<'_> {
        if self.is_revoked(hash, now_ms, ttl_ms) {
            return Cached::Invalid;
        }
        match (self.entries.get(hash), self.misses.get(hash)) {
            (Some((rec, at)), _) if fresh(*at, now_ms, ttl_ms) => Cached::Valid(rec),
            (_, Some(at)) if fresh(*at, now_ms, miss_ttl(ttl_ms)) => Cached::Invalid,
            _ => Cached::Unknown,
        }
    }

    /// Caches a lookup made at `now_ms`. A record for a digest revoked here is not taken: the
    /// revocation answers.
    pub fn put(&mut self, hash: String, record: Option<KeyRecord>, now_ms: u64, ttl_ms: u64) {
        match record {
            Some(_) if self.is_revoked(&hash, now_ms, ttl_ms) => {}
            Some(record) => {
                if self.entries.len() >= KEY_CACHE_CAPACITY {
                    self.entries.retain(|_, (_, at)| fresh(*at, now_ms, ttl_ms));
                    if self.entries.len() >= KEY_CACHE_CAPACITY {
                        self.entries.clear();
                    }
                }
                self.misses.remove(&hash);
                self.entries.insert(hash, (record, now_ms));
            }
            None => {
                if self.misses.len() >= KEY_CACHE_CAPACITY {
                    self.misses
                        .retain(|_, at| fresh(*at, now_ms, miss_ttl(ttl_ms)));
                    if self.misses.len() >= KEY_CACHE_CAPACITY {
                        self.misses.clear();
                    }
                }
                self.entries.remove(&hash);
                self.misses.insert(hash, now_ms);
            }
        }
    }

    /// Forgets a lookup (the key was just written); a revocation stays.
    pub fn forget(&mut self, hash: &str) {
        self.entries.remove(hash);
        self.misses.remove(hash);
    }

    /// Revokes a key in this isolate at once, for [`REVOCATION_HOLD_MS`] or the TTL.
    pub fn revoke(&mut self, hash: &str, now_ms: u64, ttl_ms: u64) {
        self.forget(hash);
        let hold = ttl_ms.max(REVOCATION_HOLD_MS);
        if self.revoked.len() >= KEY_CACHE_CAPACITY {
            self.revoked
                .retain(|_, at| now_ms.saturating_sub(*at) < hold);
            // Still full (thousands of deletions within the hold): the oldest goes.
            if self.revoked.len() >= KEY_CACHE_CAPACITY {
                if let Some(oldest) = self
                    .revoked
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(h, _)| h.clone())
                {
                    self.revoked.remove(&oldest);
                }
            }
        }
        self.revoked.insert(hash.to_owned(), now_ms);
    }

    /// Takes back a revocation whose deletion failed.
    pub fn unrevoke(&mut self, hash: &str) {
        self.revoked.remove(hash);
    }

    /// Whether the key was revoked in this isolate recently enough to be refused.
    pub fn is_revoked(&self, hash: &str, now_ms: u64, ttl_ms: u64) -> bool {
        self.revoked
            .get(hash)
            .is_some_and(|at| now_ms.saturating_sub(*at) < ttl_ms.max(REVOCATION_HOLD_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_prefix_and_hash_to_sha256_hex() {
        let s = new_secret([7; 24]);
        assert!(s.starts_with(KEY_PREFIX));
        assert_eq!(s.len(), KEY_PREFIX.len() + 48);
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer(Some("Bearer sk-sy-1")), Some("sk-sy-1"));
        assert_eq!(bearer(Some("bearer   sk-sy-1 ")), Some("sk-sy-1"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("sk-sy-1")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn admin_token_comparison() {
        assert!(admin_token_matches("t0ken", "t0ken"));
        assert!(!admin_token_matches("t0ken", "t0ke"));
        assert!(!admin_token_matches("t0ken", ""));
    }

    fn rec(id: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            name: "n".into(),
            hash: "h".into(),
            created_at: 1,
            last4: "abcd".into(),
            routing: None,
        }
    }

    #[test]
    fn cache_expires_after_the_ttl_and_forgets_on_revocation() {
        let mut c = KeyCache::default();
        c.put("h1".into(), Some(rec("k1")), 1000, 100);
        c.put("h2".into(), None, 1000, 100);
        assert_eq!(c.get("h1", 1099, 100), Cached::Valid(&rec("k1")));
        assert_eq!(c.get("h2", 1050, 100), Cached::Invalid);
        assert_eq!(c.get("h1", 1100, 100), Cached::Unknown, "expired");
        assert_eq!(c.get("h3", 1000, 100), Cached::Unknown);
        c.forget("h1");
        assert_eq!(c.get("h1", 1001, 100), Cached::Unknown);
        // A miss is trusted for MISS_TTL_MS at most, whatever the TTL (a key made elsewhere).
        c.put("h4".into(), None, 1000, 60_000);
        assert_eq!(c.get("h4", 1000 + MISS_TTL_MS - 1, 60_000), Cached::Invalid);
        assert_eq!(c.get("h4", 1000 + MISS_TTL_MS, 60_000), Cached::Unknown);
        c.put("h5".into(), Some(rec("k5")), 1000, 60_000);
        assert_eq!(
            c.get("h5", 1000 + MISS_TTL_MS, 60_000),
            Cached::Valid(&rec("k5"))
        );
        // A full table of misses drops the ones that no longer answer, not the recent ones.
        let mut c = KeyCache::default();
        for i in 0..KEY_CACHE_CAPACITY - 10 {
            c.put(format!("old{i}"), None, 0, 60_000);
        }
        for i in 0..10 {
            c.put(format!("new{i}"), None, MISS_TTL_MS + 500, 60_000);
        }
        c.put("last".into(), None, MISS_TTL_MS + 1000, 60_000);
        assert_eq!(c.get("new3", MISS_TTL_MS + 1000, 60_000), Cached::Invalid);
    }

    #[test]
    fn a_revocation_outranks_lookups_and_floods() {
        let mut c = KeyCache::default();
        c.put("h1".into(), Some(rec("k1")), 1000, 100);
        c.revoke("h1", 1000, 100);
        assert_eq!(c.get("h1", 1000, 100), Cached::Invalid);
        // A lookup that started before the revocation (or read a stale KV entry) comes back.
        c.put("h1".into(), Some(rec("k1")), 990, 100);
        assert_eq!(c.get("h1", 1001, 100), Cached::Invalid);
        c.forget("h1");
        assert_eq!(c.get("h1", 1002, 100), Cached::Invalid);
        // Held past the TTL, for KV's propagation time.
        assert_eq!(
            c.get("h1", 1000 + REVOCATION_HOLD_MS - 1, 100),
            Cached::Invalid
        );
        assert!(!c.is_revoked("h1", 1000 + REVOCATION_HOLD_MS, 100));
        // A flood of unknown keys does not wash it out.
        c.revoke("h2", 5000, 100);
        for i in 0..(KEY_CACHE_CAPACITY * 2) {
            c.put(format!("x{i}"), None, 5000, 1_000_000);
        }
        assert_eq!(c.get("h2", 5001, 100), Cached::Invalid);
        // Revocations stay bounded too.
        for i in 0..(KEY_CACHE_CAPACITY + 10) {
            c.revoke(&format!("r{i}"), 6000, 100);
        }
        assert!(c.revoked.len() <= KEY_CACHE_CAPACITY);
        assert!(c.is_revoked(&format!("r{}", KEY_CACHE_CAPACITY + 9), 6000, 100));
    }

    #[test]
    fn cache_stays_bounded_and_made_up_keys_do_not_push_real_ones_out() {
        let mut c = KeyCache::default();
        c.put("real".into(), Some(rec("k1")), 0, 1_000_000);
        for i in 0..(KEY_CACHE_CAPACITY * 2) {
            c.put(format!("h{i}"), None, 0, 1_000_000);
        }
        assert!(c.misses.len() <= KEY_CACHE_CAPACITY);
        assert_eq!(c.get("real", 1, 1_000_000), Cached::Valid(&rec("k1")));
        for i in 0..(KEY_CACHE_CAPACITY * 2) {
            c.put(format!("k{i}"), Some(rec("k")), 0, 1_000_000);
        }
        assert!(c.entries.len() <= KEY_CACHE_CAPACITY);
    }

    #[test]
    fn only_key_shaped_tokens_are_looked_up() {
        let good = new_secret([0xab; 24]);
        assert!(is_key_shaped(&good));
        assert!(!is_key_shaped(&good.to_uppercase()));
        assert!(!is_key_shaped(&good[..good.len() - 1]));
        assert!(!is_key_shaped(&format!("{good}0")));
        assert!(!is_key_shaped("sk-sy-1"));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}", "g".repeat(48))));
        assert!(!is_key_shaped(&format!("{KEY_PREFIX}{}", "é".repeat(24))));
    }
}
