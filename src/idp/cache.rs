//! The token-result cache of one directory.
//!
//! Keyed by the SHA-256 of the token: the token itself is never stored.
//! Bounded by `max-entries` and by time: an entry lives until the end of
//! its `stale-if-error` window, never beyond the token's own `exp`, and is
//! *fresh* (answers without asking the provider) for `ttl`. Refused tokens
//! are remembered for `negative-ttl`. Validations of one token are
//! serialized per key, so concurrent logins with the same token make one
//! provider request (single flight).

use super::{Error, Identity, Rejection, Stats};
use crate::config::CacheSettings;
use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type Key = [u8; 32];

/// The cache key of a token.
pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// A freshly validated token: who it is, and until when it is valid.
#[derive(Debug, Clone)]
pub struct Valid {
    pub identity: Arc<Identity>,
    /// The token's `exp` (seconds since the epoch), when known.
    pub exp: Option<i64>,
}

#[derive(Debug, Clone)]
enum Entry {
    Valid {
        identity: Arc<Identity>,
        fresh_until: Instant,
        usable_until: Instant,
    },
    Refused {
        rejection: Rejection,
        until: Instant,
    },
}

impl Entry {
    fn fresh_until(&self) -> Instant {
        match self {
            Entry::Valid { fresh_until, .. } => *fresh_until,
            Entry::Refused { until, .. } => *until,
        }
    }

    fn usable_until(&self) -> Instant {
        match self {
            Entry::Valid { usable_until, .. } => *usable_until,
            Entry::Refused { until, .. } => *until,
        }
    }

    fn result(&self) -> Result<Arc<Identity>, Error> {
        match self {
            Entry::Valid { identity, .. } => Ok(identity.clone()),
            Entry::Refused { rejection, .. } => Err(Error::Rejected(rejection.clone())),
        }
    }
}

struct UntilUsable;

impl Expiry<Key, Entry> for UntilUsable {
    fn expire_after_create(&self, _: &Key, value: &Entry, created_at: Instant) -> Option<Duration> {
        Some(value.usable_until().saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _: &Key,
        value: &Entry,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.usable_until().saturating_duration_since(updated_at))
    }
}

/// Cloning shares the entries (a reload keeps them, see
/// [`super::Validator::keep_cache_of`]).
#[derive(Clone)]
pub struct Cache {
    inner: Moka<Key, Entry>,
    settings: CacheSettings,
}

impl Cache {
    pub fn new(settings: CacheSettings) -> Self {
        let inner = Moka::builder()
            .max_capacity(settings.max_entries)
            .expire_after(UntilUsable)
            .support_invalidation_closures()
            .build();
        Self { inner, settings }
    }

    /// The cached answer for `key`, or `validate`'s (at most one running
    /// per key). During a provider outage a valid entry inside its
    /// `stale-if-error` window answers, with a warning.
    pub async fn get_or_validate<F, Fut>(
        &self,
        key: Key,
        stats: &Stats,
        directory: &str,
        validate: F,
    ) -> Result<Arc<Identity>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Valid, Error>>,
    {
        if let Some(entry) = self.inner.get(&key).await {
            if entry.fresh_until() > Instant::now() {
                stats.hit();
                return entry.result();
            }
        }
        let settings = &self.settings;
        let computed = self
            .inner
            .entry(key)
            .and_try_compute_with(|existing| async move {
                let now = Instant::now();
                if let Some(e) = &existing {
                    if e.value().fresh_until() > now {
                        // Another login refreshed it while this one waited.
                        stats.hit();
                        return Ok(Op::Nop);
                    }
                }
                stats.miss();
                match validate().await {
                    Ok(valid) => Ok(Op::Put(positive(settings, valid, now))),
                    Err(Error::Rejected(rejection)) => Ok(Op::Put(Entry::Refused {
                        rejection,
                        until: now + settings.negative_ttl,
                    })),
                    Err(Error::Unavailable(why)) => match existing {
                        Some(e) if matches!(e.value(), Entry::Valid { .. }) => {
                            stats.stale_serve();
                            tracing::warn!(
                                directory,
                                "provider unavailable ({why}); a cached validation answers (stale-if-error)"
                            );
                            Ok(Op::Nop)
                        }
                        _ => Err(Error::Unavailable(why)),
                    },
                }
            })
            .await?;
        match computed {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                e.value().result()
            }
            CompResult::StillNone(_) | CompResult::Removed(_) => {
                Err(Error::Unavailable("token cache lost its entry".to_string()))
            }
        }
    }

    /// Records a refusal found outside a login (re-validation), so the
    /// next login with that token is refused without waiting for `ttl`.
    pub async fn refuse(&self, key: Key, rejection: Rejection) {
        let until = Instant::now() + self.settings.negative_ttl.max(Duration::from_secs(60));
        self.inner
            .insert(key, Entry::Refused { rejection, until })
            .await;
    }

    /// Drops every cached validation of `sub` (after a logout): the next
    /// login goes to the provider.
    pub fn forget_subject(&self, sub: &str) {
        let sub = sub.to_string();
        let _ = self.inner.invalidate_entries_if(move |_, entry| {
            matches!(entry, Entry::Valid { identity, .. } if identity.sub.as_deref() == Some(sub.as_str()))
        });
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// A valid token's entry: fresh for `ttl`, usable for `stale-if-error`
/// more, both capped at the token's `exp`.
fn positive(settings: &CacheSettings, valid: Valid, now: Instant) -> Entry {
    let mut fresh_until = now + settings.ttl;
    let mut usable_until = fresh_until + settings.stale_if_error;
    if let Some(exp) = valid.exp {
        let left = exp.saturating_sub(unix_now()).max(0) as u64;
        let exp_at = now + Duration::from_secs(left);
        fresh_until = fresh_until.min(exp_at);
        usable_until = usable_until.min(exp_at);
    }
    Entry::Valid {
        identity: valid.identity,
        fresh_until,
        usable_until,
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn identity(name: &str) -> Arc<Identity> {
        Arc::new(Identity {
            username: Some(name.into()),
            email: None,
            ..Identity::default()
        })
    }

    fn settings(ttl: u64, negative: u64, stale: u64) -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_millis(ttl),
            negative_ttl: Duration::from_millis(negative),
            max_entries: 100,
            stale_if_error: Duration::from_millis(stale),
        }
    }

    #[tokio::test]
    async fn hit_after_miss_and_single_flight() {
        let cache = Arc::new(Cache::new(settings(60_000, 0, 0)));
        let stats = Arc::new(Stats::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, stats, calls) = (cache.clone(), stats.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_validate(key("t"), &stats, "d", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Valid {
                            identity: identity("alice"),
                            exp: None,
                        })
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().username.as_deref(), Some("alice"));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one validation for 8 logins"
        );
        let s = stats.snapshot();
        assert_eq!((s.misses, s.hits), (1, 7));
    }

    #[tokio::test]
    async fn never_beyond_exp() {
        let cache = Cache::new(settings(60_000, 0, 60_000));
        let stats = Stats::default();
        let valid = || async {
            Ok(Valid {
                identity: identity("a"),
                exp: Some(unix_now() - 1),
            })
        };
        cache
            .get_or_validate(key("x"), &stats, "d", valid)
            .await
            .unwrap();
        // Expired at once: the next login asks again and an outage is not served.
        let r = cache
            .get_or_validate(key("x"), &stats, "d", || async {
                Err(Error::Unavailable("down".into()))
            })
            .await;
        assert!(matches!(r, Err(Error::Unavailable(_))));
        assert_eq!(stats.snapshot().stale_serves, 0);
    }

    #[tokio::test]
    async fn stale_if_error_and_negative_entries() {
        let cache = Cache::new(settings(0, 60_000, 60_000));
        let stats = Stats::default();
        let ok = || async {
            Ok(Valid {
                identity: identity("a"),
                exp: None,
            })
        };
        let down = || async { Err(Error::Unavailable("down".into())) };
        cache
            .get_or_validate(key("good"), &stats, "d", ok)
            .await
            .unwrap();
        // ttl 0: asks again; the provider is down; the stale entry answers.
        let r = cache.get_or_validate(key("good"), &stats, "d", down).await;
        assert_eq!(r.unwrap().username.as_deref(), Some("a"));
        assert_eq!(stats.snapshot().stale_serves, 1);
        // Unknown token during the outage: unavailable.
        let r = cache.get_or_validate(key("new"), &stats, "d", down).await;
        assert!(matches!(r, Err(Error::Unavailable(_))));
        // A refusal replaces the stale entry and is remembered.
        let refuse = || async { Err(Error::Rejected(Rejection::InvalidToken("revoked".into()))) };
        assert!(cache
            .get_or_validate(key("good"), &stats, "d", refuse)
            .await
            .is_err());
        let r = cache.get_or_validate(key("good"), &stats, "d", ok).await;
        assert!(
            matches!(r, Err(Error::Rejected(_))),
            "negative entry answers"
        );
    }

    #[tokio::test]
    async fn bounded() {
        let cache = Cache::new(CacheSettings {
            max_entries: 10,
            ..settings(60_000, 0, 0)
        });
        let stats = Stats::default();
        for i in 0..100 {
            let t = format!("token-{i}");
            cache
                .get_or_validate(key(&t), &stats, "d", || async {
                    Ok(Valid {
                        identity: identity("a"),
                        exp: None,
                    })
                })
                .await
                .unwrap();
        }
        cache.inner.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
    }
}
