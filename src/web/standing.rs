//! Binding app passwords to the user's standing at the provider (issue 14
//! item 6, the checking side). At sign-in the site gives the store the
//! refresh token, which keeps it sealed (`crate::apppass::standing`). Every
//! few seconds [`check_due`] claims the users whose check is due (each at
//! most once per `app-passwords.standing-check`, on one instance only) and
//! uses each refresh token at the token endpoint ([`CONCURRENCY`] at once;
//! counted in `standing_checks_total{directory,result}`):
//!
//! - accepted: the user's app passwords work until now +
//!   `unreachable-grace`; a rotated refresh token replaces the old one;
//! - refused (400/401, or an empty answer): the [`Disabled`] callback (the
//!   store's `set_standing(user, false)`, ending the user's sessions);
//! - unreachable: nothing changes and it is logged; without a confirmation
//!   the app passwords lapse when `unreachable-grace` has passed.

use super::flow::{Provider, Standing};
use crate::apppass::Store;
use crate::config::AppPasswordSettings;
use std::sync::Arc;
use std::time::Duration;

/// Called with a user the provider no longer accepts.
pub type Disabled = Arc<dyn Fn(&str) + Send + Sync>;

/// The standing check of one directory's users.
pub struct Check {
    pub provider: Arc<Provider>,
    pub store: Arc<dyn Store>,
    pub directory: String,
    pub settings: AppPasswordSettings,
    pub disabled: Disabled,
}

/// What one round of the standing check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub active: usize,
    pub disabled: Vec<String>,
    pub unreachable: usize,
}

impl Round {
    fn checked(&self) -> usize {
        self.active + self.disabled.len() + self.unreachable
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

/// Refresh tokens in use at the provider at once, per directory.
pub const CONCURRENCY: usize = 8;

/// What the provider said of one user.
enum Verdict {
    Active,
    Refused(String),
    Unreachable,
}

/// One round at `now` (seconds since the epoch): every due user once, at
/// most [`CONCURRENCY`] at a time.
pub async fn check_due(check: &Check, now: i64) -> Round {
    let mut round = Round::default();
    let next = now + secs(check.settings.standing_check);
    let due = match check.store.due(&check.directory, now, next).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(directory = %check.directory, "standing check: {e}");
            return round;
        }
    };
    let until = now + secs(check.settings.unreachable_grace);
    let mut running = tokio::task::JoinSet::new();
    let mut due = due.into_iter();
    loop {
        while running.len() < CONCURRENCY {
            let Some(d) = due.next() else { break };
            let (provider, store) = (check.provider.clone(), check.store.clone());
            running.spawn(async move { one(&provider, store.as_ref(), d, until).await });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let verdict = done.unwrap_or(Verdict::Unreachable);
        let result = match verdict {
            Verdict::Active => {
                round.active += 1;
                "active"
            }
            Verdict::Refused(user) => {
                (check.disabled)(&user);
                round.disabled.push(user);
                "refused"
            }
            Verdict::Unreachable => {
                round.unreachable += 1;
                "unreachable"
            }
        };
        crate::metrics::global().standing_check(&check.directory, result);
    }
    round
}

/// Uses one user's refresh token and records a confirmation.
async fn one(
    provider: &Provider,
    store: &dyn Store,
    d: crate::apppass::Due,
    until: i64,
) -> Verdict {
    match provider.refresh(&d.refresh).await {
        Ok(Standing::Active(rotated)) => {
            let rotated = rotated.map(crate::secret::Secret::new);
            if let Err(e) = store.confirmed(&d.user, rotated, until).await {
                tracing::error!(user = %d.user, "standing check: cannot record the confirmation: {e}");
            }
            Verdict::Active
        }
        Ok(Standing::Refused) => {
            tracing::warn!(user = %d.user, "standing check: the provider refused the user's refresh token: app passwords disabled");
            Verdict::Refused(d.user)
        }
        Err(e) => {
            tracing::warn!(user = %d.user, "standing check: provider unreachable, standing kept (app passwords lapse after `unreachable-grace` without a confirmation): {e}");
            Verdict::Unreachable
        }
    }
}

/// How often the store is asked for due users.
pub fn tick(standing_check: Duration) -> Duration {
    (standing_check / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Runs [`check_due`] every [`tick`], forever.
pub async fn run(check: Check) {
    let mut tick = tokio::time::interval(tick(check.settings.standing_check));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let round = check_due(&check, crate::apppass::now()).await;
        if round.checked() > 0 {
            tracing::info!(
                directory = %check.directory,
                active = round.active,
                disabled = round.disabled.len(),
                unreachable = round.unreachable,
                "standing check done"
            );
        }
    }
}
