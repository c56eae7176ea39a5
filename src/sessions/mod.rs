//! Relayed sessions while they live: who is connected, how they logged in,
//! and ending them when access ends.
//!
//! - [`registry`]: the [`Registry`] of live sessions; a login registers its
//!   session before the relay starts and the registration unregisters it
//!   however the session ends. `who` lists it, `kick`, re-validation and
//!   back-channel logout end sessions through it.
//! - [`recent`]: the ends recently ordered, so that a login under way when
//!   access ended is ended as its session registers.
//! - [`grant`]: what a login was granted on ([`Grant`]): user, directory,
//!   how it authenticated and the token's `sub`, `sid` and `exp`.
//! - [`revalidate`]: the token behind open sessions is asked about again at
//!   the provider every `session.revalidate`, once per distinct token,
//!   spread over the interval.
//!
//! Every protocol gets this without code of its own: the front-end only
//! supplies the words a session ends with ([`crate::frontend::Frontend::ended`]).

pub mod grant;
pub mod recent;
pub mod registry;
pub mod revalidate;

pub use grant::{Grant, How};
pub use recent::Mark;
pub use registry::{Info, Registration, Registry, Selector, Traffic};

/// Why a session was ended by the proxy (the `result` of its log line and
/// the `reason` label of the `sessions_ended` metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The provider refused the token on re-validation.
    Revoked,
    /// The token's `exp` passed (`session.at-expiry = "end"`).
    Expired,
    /// The provider signalled a logout (OpenID Connect back-channel logout).
    Logout,
    /// An administrator ended it (`oauthbearer-proxy kick`).
    Kicked,
    /// The provider could not be asked for longer than `cache.stale-if-error`.
    Unverified,
    /// The app password the session logged in with was revoked.
    PasswordRevoked,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::Logout => "logout",
            Reason::Kicked => "kicked",
            Reason::Unverified => "unverified",
            Reason::PasswordRevoked => "app-password-revoked",
        }
    }

    /// What the client is told, in its protocol's farewell.
    pub fn text(self) -> &'static str {
        match self {
            Reason::Revoked => "Access was revoked at the identity provider.",
            Reason::Expired => "The access token expired; please log in again.",
            Reason::Logout => "Signed out at the identity provider.",
            Reason::Kicked => "Session ended by the administrator.",
            Reason::Unverified => "Access could not be confirmed; please log in again.",
            Reason::PasswordRevoked => "The app password was revoked.",
        }
    }
}
