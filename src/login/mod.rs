//! The whole authentication attempt, the same for every protocol.
//!
//! A front-end parses its own commands; when one starts a login it calls
//! [`authenticate`] (a SASL mechanism and its optional initial response) or
//! [`password`] (a protocol's own user/password command, IMAP `LOGIN`, POP3
//! `USER`/`PASS`). From there this module owns everything: the mechanism
//! choice, the SASL exchange with the RFC 7628 error challenge and the
//! client's dummy reply, password tokens and passthrough, the upstream
//! login, the failure delay and count, metrics and the outcome, and after a
//! success the relay ([`relay`]). What differs by protocol is only wire
//! syntax, which the front-end supplies through [`Wire`].
//!
//! - [`attempt`]: the flow of one attempt.
//! - [`wire`]: the [`Wire`] trait and the base64-line response reader.

mod attempt;
mod relay;
pub mod wire;

pub use attempt::{auth_allowed, authenticate, password, Request};
pub use relay::relay;
pub use wire::{Rejected, Response, Wire};

use crate::client::Client;
use crate::gateway::Outcome;
use crate::upstream::LoggedIn;

/// The login state of one connection: its failed attempts and what the
/// connection's log line will say.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Failures on this connection, for `max-auth-failures`.
    pub failures: u32,
    pub outcome: Outcome,
}

impl Attempts {
    /// The outcome of a connection that ends now with `result`.
    pub fn end(&mut self, result: &'static str) -> Outcome {
        std::mem::take(&mut self.outcome).ended(result)
    }
}

/// Where an attempt leaves the connection.
pub enum After {
    /// Back to the front-end's command loop.
    Continue(Client),
    /// Logged in: the client has its success reply; relay next.
    LoggedIn(Client, Box<LoggedIn>),
    /// The connection ends with this result word.
    Done(&'static str),
}
