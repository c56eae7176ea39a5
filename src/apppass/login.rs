//! Logging in with an app password (`app-passwords = true` on a listener):
//! the password is looked up by its keyed hash, the user name must name its
//! owner (compared as the upstream compares user names), and the upstream
//! login is the one tokens get, as the owner. A wrong app password is an
//! ordinary authentication failure (delayed, counted, penalised) and never
//! reaches the upstream.

use super::password;
use crate::gateway::{Failure, Service, Success};
use crate::sasl::challenge::Status;
use crate::sessions::Grant;
use crate::upstream::LoginContext;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Last-used updates in flight at once; beyond that one is skipped rather
/// than queued (it is a convenience, never worth slowing logins for).
static TOUCHES: Semaphore = Semaphore::const_new(64);
const TOUCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A password's last use is written at most this often for the same
/// client address and protocol: a phone that logs in every minute costs no
/// database write per login.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Passwords whose last write is remembered (the map is cleared when full).
const TOUCH_REMEMBERED: usize = 100_000;

/// When a password's last use was last written: at, client, protocol.
type Written = (Instant, String, &'static str);

/// When each password's last use was last written, by id.
static WRITTEN: Mutex<Option<HashMap<String, Written>>> = Mutex::new(None);

/// Whether this use is worth a write: a new client or protocol, or
/// `TOUCH_EVERY` since the last write.
fn worth_writing(id: &str, client: &str, protocol: &'static str) -> bool {
    let now = Instant::now();
    let mut guard = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some((at, c, p)) = map.get(id) {
        if c == client && *p == protocol && now.duration_since(*at) < TOUCH_EVERY {
            return false;
        }
    }
    if map.len() >= TOUCH_REMEMBERED {
        map.clear();
    }
    map.insert(id.to_string(), (now, client.to_string(), protocol));
    true
}

/// What a password login presented.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// PLAIN's authorization identity, if the mechanism has one.
    pub authzid: Option<&'a [u8]>,
    pub username: &'a [u8],
    pub password: &'a [u8],
}

fn refused(reason: impl Into<String>) -> Failure {
    Failure::Refused {
        status: Status::InvalidToken,
        reason: reason.into(),
        directory: None,
    }
}

impl Service {
    /// Whether a password is to be checked as an app password: the
    /// listener takes them and it has their shape.
    pub fn password_is_app_password(&self, password: &[u8]) -> bool {
        self.listener.app_passwords && password::looks_like(password)
    }

    /// A login with an app password; the verdict is booked as for tokens
    /// (`logins` metric, the client address's failure penalty).
    pub async fn app_password_login(
        &self,
        ctx: LoginContext<'_>,
        mechanism: &str,
        presented: Presented<'_>,
    ) -> Result<Success, Failure> {
        let result = self.app_password_login_once(ctx, presented).await;
        self.verdict(ctx.client, mechanism, &result);
        if let Ok(success) = &result {
            touch(self, ctx, success);
        }
        result
    }

    async fn app_password_login_once(
        &self,
        ctx: LoginContext<'_>,
        presented: Presented<'_>,
    ) -> Result<Success, Failure> {
        // A penalised address waits before its password is looked up.
        let wait = self.limiter.penalty(ctx.client.peer.ip());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let case = self.upstream.config.identity_case;
        let user = match std::str::from_utf8(presented.username) {
            Ok("") => return Err(refused("empty user name")),
            Ok(u) => u,
            Err(_) => return Err(refused("the user name is not UTF-8")),
        };
        if let Some(a) = presented.authzid.filter(|a| !a.is_empty()) {
            if !std::str::from_utf8(a).is_ok_and(|a| case.same(a, user)) {
                return Err(refused(
                    "PLAIN authorization identity differs from the user name",
                ));
            }
        }
        let Some(store) = &self.apppass else {
            return Err(Failure::ProviderUnavailable(
                "the app-password store is not open".into(),
            ));
        };
        let found = store
            .verify(presented.password)
            .await
            .map_err(|e| Failure::ProviderUnavailable(format!("app-password store: {e}")))?;
        let Some(found) = found else {
            return Err(refused(format!("no such app password (user {user:?})")));
        };
        let owner = &found.password.user;
        if !case.same(user, owner) {
            return Err(refused(format!(
                "the app password is not {user:?}'s (it is {owner:?}'s)"
            )));
        }
        if found.disabled {
            return Err(refused(format!(
                "{owner}: the provider's standing check refused the user"
            )));
        }
        if found.lapsed(super::now()) {
            return Err(refused(format!(
                "{owner}: app passwords lapsed at {} (no sign-in at the site or confirmation by the provider since); signing in at the site renews them",
                crate::web::pages::date(found.valid_until.unwrap_or_default())
            )));
        }
        let owner = case.apply(owner).map_err(refused)?;
        let grant = Grant::app_password(&found.password.id);
        self.upstream_login(ctx, owner, grant).await
    }
}

/// Records the login as the password's last use, in the background: the
/// client was already answered by the time the store hears of it. The
/// same client and protocol are written at most once a minute.
fn touch(svc: &Service, ctx: LoginContext<'_>, success: &Success) {
    let (Some(store), Some(id)) = (svc.apppass.clone(), success.grant.app_password.clone()) else {
        return;
    };
    let client = ctx.client.peer.ip().to_string();
    let protocol = svc.listener.protocol.name();
    if !worth_writing(&id, &client, protocol) {
        return;
    }
    let Ok(permit) = TOUCHES.try_acquire() else {
        tracing::debug!("app password last-use update skipped: too many in flight");
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let update = store.touch(&id, &client, protocol);
        match tokio::time::timeout(TOUCH_TIMEOUT, update).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("app password last-use update failed: {e}"),
            Err(_) => tracing::warn!("app password last-use update timed out"),
        }
    });
}
