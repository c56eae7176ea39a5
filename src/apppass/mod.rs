//! App passwords (issue 14): per-device passwords a user creates on the
//! self-service site after signing in at the OpenID provider, bound to
//! that identity at the provider.
//!
//! This module is the interface the site (`crate::web`) and the login path
//! share; the stores implementing it live beside it:
//!
//! - [`password`]: generating, recognising and hashing app passwords;
//! - [`sqlite`]: the default store, one SQLite file (WAL);
//! - [`postgres`]: PostgreSQL, for several proxy instances (LISTEN/NOTIFY
//!   ends sessions everywhere; there is no local cache to go stale);
//! - [`login`]: the login with an app password (`app-passwords = true`).
//!
//! [`open`] opens the configured store; [`installed`] is the process's one
//! store once the server has opened it (the site and the control socket use it).

mod cache;
#[doc(hidden)]
pub mod conformance;
pub mod login;
pub mod password;
pub mod postgres;
pub mod sqlite;
pub mod standing;

use crate::config::{StoreSettings, StoreUrl};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
pub use standing::{Due, SignIn, Standing};
use std::sync::{Arc, OnceLock};

/// One app password as listed (never the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    /// Stable id within the owner's list.
    pub id: String,
    /// The owner: the upstream user name the password logs in as.
    pub user: String,
    /// What the user called it ("Phone", "Outlook at work").
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub last_used: Option<LastUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    pub at: i64,
    pub client: String,
    pub protocol: String,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the app-password store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the site and the administration commands need from the store.
pub trait Store: Send + Sync {
    /// Creates an app password for `user`; returns its record and the
    /// password itself, shown once and never stored.
    fn create<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(AppPassword, Secret), StoreError>>;
    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<AppPassword>, StoreError>>;
    /// Revokes one (by id) or, with `None`, all of `user`'s; returns how many.
    fn revoke<'a>(
        &'a self,
        user: &'a str,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// The app password `password` is, if any (whatever its owner), and
    /// whether its owner is disabled. Compared by keyed hash in constant time.
    fn verify<'a>(
        &'a self,
        _password: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Verified>, StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// Records a successful login: when, from which client address, with
    /// which protocol.
    fn touch<'a>(
        &'a self,
        _id: &'a str,
        _client: &'a str,
        _protocol: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// The standing check's verdict for `user`: with `ok = false` every app
    /// password of the user stops working (and their open sessions end),
    /// and the refused refresh token is forgotten, until a later `true` or
    /// a new sign-in.
    fn set_standing<'a>(
        &'a self,
        _user: &'a str,
        _ok: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// The user's standing: disabled by the provider, checked, valid until.
    fn standing<'a>(&'a self, _user: &'a str) -> BoxFuture<'a, Result<Standing, StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// `user` signed in at the site: keeps the refresh token (sealed) or
    /// forgets the old one, lifts a refusal, sets the validity and the
    /// first check.
    fn signed_in<'a>(&'a self, _sign_in: SignIn<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// Claims the users of `directory` whose check is due at `now` (and
    /// not disabled), moving their next check to `next`: each claimed user
    /// is checked by this caller only.
    fn due<'a>(
        &'a self,
        _directory: &'a str,
        _now: i64,
        _next: i64,
    ) -> BoxFuture<'a, Result<Vec<Due>, StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }

    /// The provider confirmed `user`: their app passwords work until
    /// `valid_until`; `rotated` replaces the kept refresh token.
    fn confirmed<'a>(
        &'a self,
        _user: &'a str,
        _rotated: Option<Secret>,
        _valid_until: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(unsupported()) })
    }
}

fn unsupported() -> StoreError {
    StoreError::Unavailable("this store does not support it".into())
}

/// An app password a login presented, as the store found it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub password: AppPassword,
    /// The owner's standing check said no.
    pub disabled: bool,
    /// The owner's app passwords lapse then without a newer confirmation
    /// by the provider (seconds since the epoch).
    pub valid_until: Option<i64>,
}

impl Verified {
    /// Whether the password lapsed at `now` (no refresh token and
    /// `max-age` passed, or the provider unreachable for too long).
    pub fn lapsed(&self, now: i64) -> bool {
        self.valid_until.is_some_and(|until| until <= now)
    }
}

/// Opens (and on first start creates or migrates) the configured store.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &settings.url {
        StoreUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path, settings).await?),
        StoreUrl::Postgres(url) => Arc::new(postgres::PgStore::open(url, settings).await?),
    })
}

/// Opens and installs the store when a listener takes app passwords and
/// none is open yet (at start, or the first reload that needs one). A
/// changed `[store]` takes effect at the next restart.
pub async fn ensure(config: &crate::config::Config) -> Result<(), String> {
    if !config.uses_app_passwords() || installed().is_some() {
        return Ok(());
    }
    let store = open(&config.store)
        .await
        .map_err(|e| format!("`store.url`: {e}"))?;
    tracing::info!(store = %config.store.url, "app-password store open");
    install(store);
    Ok(())
}

static INSTALLED: OnceLock<Arc<dyn Store>> = OnceLock::new();

/// Makes `store` the process's store (once; later calls are ignored).
pub fn install(store: Arc<dyn Store>) {
    let _ = INSTALLED.set(store);
}

/// The process's store, once the server opened it.
pub fn installed() -> Option<Arc<dyn Store>> {
    INSTALLED.get().cloned()
}

/// Checks what a user may call an app password.
pub(crate) fn check_name(user: &str, name: &str) -> Result<(), StoreError> {
    if user.is_empty() || user.len() > 255 || user.chars().any(char::is_control) {
        return Err(StoreError::Invalid("not a user name".into()));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "the name must be 1 to 64 characters, without control characters".into(),
        ));
    }
    Ok(())
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    crate::idp::cache::unix_now()
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` in UTC (civil from days,
/// Howard Hinnant's algorithm): how the site, the logs and the
/// administration commands show app-password times.
pub fn utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Ends the open sessions that logged in with these app passwords (by id).
pub(crate) fn end_sessions(ids: &[String]) -> usize {
    if ids.is_empty() {
        return 0;
    }
    let registry = crate::sessions::Registry::shared();
    let selector = crate::sessions::Selector::AppPasswords(ids.to_vec());
    registry.end(&selector, crate::sessions::Reason::PasswordRevoked)
}

/// Ends the open app-password sessions of a user found disabled.
pub(crate) fn end_user_sessions(user: &str) -> usize {
    let registry = crate::sessions::Registry::shared();
    let selector = crate::sessions::Selector::AppPasswordUser(user.to_string());
    registry.end(&selector, crate::sessions::Reason::Revoked)
}
