//! Binding app passwords to the user's standing at the provider (issue 14
//! item 6, the site's side). At sign-in the site hands the refresh token to
//! a [`Keeper`] (the lead wires it to the app-password store, which keeps
//! it encrypted). Every `app-passwords.standing-check` [`check_all`] uses
//! each kept token at the token endpoint: refused (400/401, or an empty
//! answer) → the [`Disabled`] callback (the store's `set_standing(user,
//! false)` and ending the user's sessions); unreachable → kept, logged.

use super::flow::{Provider, Standing};
use crate::apppass::{BoxFuture, StoreError};
use crate::secret::Secret;
use std::sync::Arc;

/// Where signed-in users' refresh tokens go.
pub trait Keeper: Send + Sync {
    /// `user` signed in; `refresh` is `None` when the provider issued no
    /// refresh token (app passwords then expire `max-age` after this).
    fn keep<'a>(
        &'a self,
        user: &'a str,
        refresh: Option<Secret>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every kept (user, refresh token), for the standing check.
    fn kept(&self) -> BoxFuture<'_, Result<Vec<(String, Secret)>, StoreError>>;
    /// The provider rotated `user`'s refresh token.
    fn replace<'a>(
        &'a self,
        user: &'a str,
        refresh: Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.keep(user, Some(refresh))
    }
}

/// Called with a user the provider no longer accepts.
pub type Disabled = Arc<dyn Fn(&str) + Send + Sync>;

/// What one round of the standing check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub active: usize,
    pub disabled: Vec<String>,
    pub unreachable: usize,
}

/// One round: every kept refresh token is used once.
pub async fn check_all(provider: &Provider, keeper: &dyn Keeper, disabled: &Disabled) -> Round {
    let mut round = Round::default();
    let kept = match keeper.kept().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("standing check: cannot list refresh tokens: {e}");
            return round;
        }
    };
    for (user, token) in kept {
        match provider.refresh(&token).await {
            Ok(Standing::Active(rotated)) => {
                round.active += 1;
                if let Some(new) = rotated {
                    if let Err(e) = keeper.replace(&user, Secret::new(new)).await {
                        tracing::warn!(user = %user, "standing check: cannot keep the rotated refresh token: {e}");
                    }
                }
            }
            Ok(Standing::Refused) => {
                tracing::warn!(user = %user, "standing check: the provider refused the user's refresh token: app passwords disabled");
                disabled(&user);
                round.disabled.push(user);
            }
            Err(e) => {
                tracing::warn!(user = %user, "standing check: provider unreachable, standing kept: {e}");
                round.unreachable += 1;
            }
        }
    }
    round
}

/// Runs [`check_all`] every `interval`, forever.
pub async fn run(
    provider: Arc<Provider>,
    keeper: Arc<dyn Keeper>,
    disabled: Disabled,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let round = check_all(&provider, keeper.as_ref(), &disabled).await;
        tracing::info!(
            active = round.active,
            disabled = round.disabled.len(),
            unreachable = round.unreachable,
            "standing check done"
        );
    }
}
