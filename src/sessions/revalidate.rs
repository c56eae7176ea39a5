//! Re-validation of the tokens behind open sessions
//! (`session.revalidate` of the directory that validated them).
//!
//! One task per distinct token, started with the token's first session and
//! stopped with its last. Its first check comes at an offset within the
//! interval taken from the token's hash, so tokens that logged in together
//! are asked about spread over the interval, not all at once; after that
//! every interval. Refused: the token's sessions end (`revoked`).
//! Unreachable: they are kept, with a warning, until the last confirmation
//! is older than the directory's `cache.stale-if-error` (when set), then
//! they end (`unverified`). Past the token's `exp` there is nothing left
//! to ask: with `session.at-expiry = "keep"` the sessions go on (only
//! back-channel logout and `kick` end them), with `"end"` their relay ends
//! them at `exp`.

use super::registry::{Registry, Selector};
use super::{Grant, Reason};
use crate::idp::{cache::unix_now, Error, Validator};
use crate::secret::Secret;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Starts re-validating the token of `grant` when its directory asks for it.
pub(super) fn spawn(registry: &Arc<Registry>, key: [u8; 32], grant: &Grant) -> Option<AbortHandle> {
    let validator = grant.validator.clone()?;
    let every = validator.config().session.revalidate?;
    let token = grant.token.clone()?;
    let job = Job {
        registry: Arc::downgrade(registry),
        key,
        validator,
        token,
        exp: grant.exp,
        every,
    };
    Some(tokio::spawn(job.run()).abort_handle())
}

struct Job {
    registry: Weak<Registry>,
    key: [u8; 32],
    validator: Arc<Validator>,
    token: Arc<Secret>,
    exp: Option<i64>,
    every: Duration,
}

impl Job {
    async fn run(self) {
        tokio::time::sleep(first_offset(&self.key, self.every)).await;
        let mut confirmed = Instant::now();
        loop {
            if self.expired() {
                return;
            }
            match self.validator.recheck(&self.token).await {
                Ok(()) => confirmed = Instant::now(),
                Err(Error::Rejected(r)) => {
                    if self.expired() {
                        return;
                    }
                    self.end(
                        Reason::Revoked,
                        &format!("the provider refused the token: {r}"),
                    );
                    return;
                }
                Err(Error::Unavailable(why)) => {
                    let bound = self.validator.config().cache.stale_if_error;
                    if !bound.is_zero() && confirmed.elapsed() > bound {
                        self.end(
                            Reason::Unverified,
                            &format!("the provider has been unavailable for longer than cache.stale-if-error ({why})"),
                        );
                        return;
                    }
                    self.warn_kept(&why);
                }
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// Whether the token's `exp` (plus the clock skew) has passed.
    fn expired(&self) -> bool {
        let skew = self.validator.config().clock_skew.as_secs() as i64;
        self.exp.is_some_and(|exp| unix_now() > exp + skew)
    }

    fn end(&self, reason: Reason, why: &str) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let users = users(&registry, self.key);
        let n = registry.end(&Selector::Token(self.key), reason);
        tracing::info!(
            directory = self.validator.name(),
            users = %users,
            sessions = n,
            reason = reason.name(),
            "re-validation ends sessions: {why}"
        );
    }

    fn warn_kept(&self, why: &str) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        tracing::warn!(
            directory = self.validator.name(),
            users = %users(&registry, self.key),
            "re-validation could not reach the provider ({why}); the sessions are kept"
        );
    }
}

/// The users of a token's sessions, for log lines.
fn users(registry: &Registry, key: [u8; 32]) -> String {
    let mut users: Vec<String> = registry
        .list(&Selector::Token(key))
        .into_iter()
        .map(|i| i.user)
        .collect();
    users.dedup();
    users.join(",")
}

/// Where in the first interval a token is first re-checked: uniform over
/// the interval across tokens (the key is a SHA-256), never zero.
fn first_offset(key: &[u8; 32], every: Duration) -> Duration {
    let mut n = [0u8; 8];
    n.copy_from_slice(&key[..8]);
    let span = every.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_le_bytes(n) % span + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_checks_spread_over_the_interval() {
        let every = Duration::from_secs(10);
        let mut buckets = [0u32; 10];
        for i in 0..1000u32 {
            let key: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()).into();
            let at = first_offset(&key, every);
            assert!(at > Duration::ZERO && at <= every);
            buckets[(at.as_millis() as usize - 1) / 1000] += 1;
        }
        // 100 expected per second of the interval.
        assert!(
            buckets.iter().all(|&b| (60..=140).contains(&b)),
            "{buckets:?}"
        );
    }
}
