//! The logout tokens' `jti`s already used (Back-Channel Logout §2.6 step
//! 7), kept until the token they came with could no longer be accepted
//! anyway. Bounded: at [`CAPACITY`] the entry that expires first is
//! dropped. One cache for the process, so a reload does not forget.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Remembered `jti`s at most (a provider sends one token per logout).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Replay {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (issuer, jti) → until when it is kept.
    seen: HashMap<(String, String), i64>,
    /// The same entries ordered by expiry, for pruning and eviction.
    by_expiry: BTreeSet<(i64, String, String)>,
}

impl Replay {
    /// The process's cache.
    pub fn shared() -> Arc<Replay> {
        static SHARED: OnceLock<Arc<Replay>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(Replay::default())).clone()
    }

    /// Records `jti` of `issuer` until `until`; false when it was already
    /// there (a replay).
    pub fn first_use(&self, issuer: &str, jti: &str, until: i64, now: i64) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.prune(now);
        let key = (issuer.to_string(), jti.to_string());
        if inner.seen.contains_key(&key) {
            return false;
        }
        if inner.seen.len() >= CAPACITY {
            if let Some(first) = inner.by_expiry.pop_first() {
                inner.seen.remove(&(first.1, first.2));
            }
        }
        inner
            .by_expiry
            .insert((until, key.0.clone(), key.1.clone()));
        inner.seen.insert(key, until);
        true
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn prune(&mut self, now: i64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, iss, jti)) = self.by_expiry.pop_first() {
                self.seen.remove(&(iss, jti));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_used_once_until_it_expires() {
        let r = Replay::default();
        assert!(r.first_use("iss", "a", 100, 10));
        assert!(!r.first_use("iss", "a", 100, 50));
        assert!(r.first_use("other-iss", "a", 100, 50));
        // Past its expiry the token itself is refused; the entry goes.
        assert!(r.first_use("iss", "b", 200, 150));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bounded_by_evicting_the_first_to_expire() {
        let r = Replay::default();
        for i in 0..CAPACITY as i64 {
            assert!(r.first_use("iss", &i.to_string(), 1_000 + i, 0));
        }
        assert!(r.first_use("iss", "new", 5_000, 0));
        assert_eq!(r.len(), CAPACITY);
        assert!(r.first_use("iss", "0", 1_000, 0), "the oldest was evicted");
        assert!(!r.first_use("iss", "new", 5_000, 0));
    }
}
