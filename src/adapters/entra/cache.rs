//! Tokens already verified, keyed by a digest of the whole token: Azure
//! sends one token with many calls, so most calls skip the RSA check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::ports::Caller;

pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
}

/// A verified token: until when, who, and the `kid` that signed it.
struct Entry {
    until: i64,
    caller: Caller,
    kid: Arc<str>,
}

pub fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub enum Lookup {
    /// Verified before, by the key `kid`: valid while that key is listed.
    Hit(Caller, Arc<str>),
    Expired,
    Miss,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// `valid_until` is the token's `exp` plus leeway, compared with `now`.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Lookup {
        if self.capacity == 0 {
            return Lookup::Miss;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.get(key) {
            Some(e) if now <= e.until => Lookup::Hit(e.caller.clone(), e.kid.clone()),
            Some(_) => {
                entries.remove(key);
                Lookup::Expired
            }
            None => Lookup::Miss,
        }
    }

    /// Forgets a verdict whose signing key is gone.
    pub fn remove(&self, key: &[u8; 32]) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    pub fn insert(&self, key: [u8; 32], valid_until: i64, caller: Caller, kid: Arc<str>, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now <= e.until);
            if entries.len() >= self.capacity {
                // Bounded memory beats a perfect hit rate: start over.
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                until: valid_until,
                caller,
                kid,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            app_id: "a".into(),
            tenant_id: "t".into(),
            token_version: "2.0".into(),
        }
    }

    #[test]
    fn expiry_is_checked_on_every_use_and_memory_is_bounded() {
        let cache = VerifiedCache::new(2);
        cache.insert(digest("one"), 100, caller(), "k1".into(), 0);
        assert!(matches!(cache.get(&digest("one"), 100), Lookup::Hit(_, kid) if &*kid == "k1"));
        assert!(matches!(cache.get(&digest("one"), 101), Lookup::Expired));
        assert!(matches!(cache.get(&digest("one"), 50), Lookup::Miss));
        for i in 0..10 {
            cache.insert(digest(&i.to_string()), 100, caller(), "k1".into(), 0);
            assert!(cache.len() <= 2);
        }
    }
}
