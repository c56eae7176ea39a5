//! A user's standing at the provider, as the store keeps it (issue 14
//! item 6): the refresh token from the last sign-in, sealed with
//! AES-256-GCM under a key derived from the store's hash key; until when
//! the user's app passwords work without a newer confirmation; when the
//! next standing check is due.
//!
//! The site writes it at sign-in ([`super::Store::signed_in`]); the
//! standing check (`crate::web::standing`) claims the due users
//! ([`super::Store::due`]) and records each verdict. A claim moves the
//! user's next check forward in the same statement, so of several proxy
//! instances on one PostgreSQL exactly one uses a given refresh token per
//! interval (two at once would trip the provider's reuse detection of
//! rotated refresh tokens).

use super::password::HashKey;
use super::StoreError;
use crate::secret::Secret;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// What a sign-in at the site leaves for the standing check.
pub struct SignIn<'a> {
    /// The directory the user signed in with (whose provider checks them).
    pub directory: &'a str,
    pub user: &'a str,
    /// `None` when the provider issued none: then nothing is checked and
    /// the app passwords lapse at `valid_until` (`app-passwords.max-age`).
    pub refresh: Option<Secret>,
    /// Seconds since the epoch.
    pub valid_until: i64,
    /// The first standing check.
    pub next_check: i64,
}

/// A user as the store sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Standing {
    /// The provider refused the user's refresh token.
    pub disabled: bool,
    /// A refresh token is kept: the provider is asked every interval.
    pub checked: bool,
    /// App passwords stop working then unless confirmed again (seconds
    /// since the epoch); `None` for a user who never signed in at the site.
    pub valid_until: Option<i64>,
}

impl Standing {
    /// In words, at `now`, for the administration commands.
    pub fn describe(&self, now: i64) -> String {
        let date = |t: i64| format!("{} UTC", super::utc(t));
        match (self.disabled, self.checked, self.valid_until) {
            (true, _, _) => "refused by the provider's standing check: app passwords off until \
                             the user signs in at the site again"
                .into(),
            (_, _, Some(t)) if t <= now => format!(
                "lapsed at {} (no sign-in or confirmation by the provider since)",
                date(t)
            ),
            (_, true, Some(t)) => format!(
                "checked at the provider; confirmed until {} unless checked again",
                date(t)
            ),
            (_, false, Some(t)) => format!("no refresh token: app passwords lapse at {}", date(t)),
            _ => "never signed in at the site: not checked at the provider".into(),
        }
    }
}

/// A user whose standing check is due, with their refresh token.
pub struct Due {
    pub user: String,
    pub refresh: Secret,
}

/// Seals and opens refresh tokens (AES-256-GCM, random 96-bit nonce, the
/// owner as associated data: a sealed token moved to another row fails).
pub struct Sealer(LessSafeKey);

const PURPOSE: &str = "oauthbearer-proxy refresh-token sealing v1";

impl Sealer {
    pub fn new(key: &HashKey) -> Self {
        let derived = key.derive(PURPOSE);
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes a 32-byte key"));
        Self(LessSafeKey::new(unbound))
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, owner: &str, token: &Secret) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| StoreError::Unavailable(format!("random source: {e}")))?;
        let mut sealed = token.expose().as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| StoreError::Unavailable("cannot seal the refresh token".into()))?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// The token, or `None` when `sealed` was not sealed for `owner` with
    /// this key (a changed `store.hash-key`, a damaged row).
    pub fn open(&self, owner: &str, sealed: &[u8]) -> Option<Secret> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = zeroize::Zeroizing::new(body.to_vec());
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut body)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }

    /// Opens each claimed row; a row that does not open is logged and left
    /// to lapse (its `valid_until` passes without a confirmation).
    pub fn open_all(&self, rows: Vec<(String, Vec<u8>)>) -> Vec<Due> {
        rows.into_iter()
            .filter_map(|(user, sealed)| match self.open(&user, &sealed) {
                Some(refresh) => Some(Due { user, refresh }),
                None => {
                    tracing::error!(user = %user, "standing check: the kept refresh token does not open (was `store.hash-key` changed?); the user must sign in at the site again");
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_in_words() {
        let s = |disabled, checked, valid_until| Standing {
            disabled,
            checked,
            valid_until,
        };
        let t = 1_767_225_600; // 2026-01-01 00:00 UTC
        assert!(s(false, false, None)
            .describe(t)
            .starts_with("never signed in"));
        assert!(s(true, false, Some(t + 9))
            .describe(t)
            .starts_with("refused"));
        assert_eq!(
            s(false, true, Some(t + 60)).describe(t),
            "checked at the provider; confirmed until 2026-01-01 00:01 UTC unless checked again"
        );
        assert!(s(false, false, Some(t + 60))
            .describe(t)
            .starts_with("no refresh token"));
        assert!(s(false, true, Some(t))
            .describe(t)
            .starts_with("lapsed at 2026-01-01 00:00 UTC"));
    }

    #[test]
    fn sealed_for_one_owner_and_key_only() {
        let key = HashKey::from_secret("k");
        let sealer = Sealer::new(&key);
        let token = Secret::new("refresh-token-value".to_string());
        let sealed = sealer.seal("alice", &token).unwrap();
        assert!(!sealed
            .windows(token.expose().len())
            .any(|w| w == token.expose().as_bytes()));
        assert_eq!(
            sealer.open("alice", &sealed).unwrap().expose(),
            token.expose()
        );
        assert!(sealer.open("bob", &sealed).is_none(), "another owner");
        let other = Sealer::new(&HashKey::from_secret("other"));
        assert!(other.open("alice", &sealed).is_none(), "another key");
        assert!(sealer.open("alice", &sealed[..5]).is_none(), "truncated");
        let again = sealer.seal("alice", &token).unwrap();
        assert_ne!(sealed, again, "a fresh nonce each time");
    }
}
