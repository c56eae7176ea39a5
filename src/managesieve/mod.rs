//! The ManageSieve front-end (RFC 5804, port 4190): the capability
//! greeting, STARTTLS, AUTHENTICATE with OAUTHBEARER / XOAUTH2 (RFC 7628)
//! and PLAIN passthrough, LOGOUT, CAPABILITY, NOOP; then the relay.
//!
//! - [`syntax`]: strings, literals and response lines (pure; the upstream
//!   login uses it too).
//! - [`command`]: parsing pre-authentication commands (pure).
//! - [`read`]: reading a command with its literals, and a SASL response.
//! - [`reply`]: the capability list and the responses.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.
//! - [`wire`]: ManageSieve's syntax for the shared login path ([`crate::login`]).

pub mod command;
pub mod read;
pub mod reply;
pub mod session;
pub mod syntax;
pub mod wire;

pub use session::serve;

use crate::client::Client;
use crate::frontend::Frontend;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// The ManageSieve front-end, as the server and the limits see it.
pub static FRONTEND: Frontend = Frontend {
    alpn: &[b"managesieve"],
    greeting: session::greeting,
    serve: serve_boxed,
    idle_farewell: |_| reply::bye("Disconnected for inactivity."),
    ended: |_, why| reply::bye(why),
    over_limit: |_, what| format!("BYE (TRYLATER) \"{what}, try again later.\"\r\n"),
};

fn serve_boxed(client: Client, svc: &Service) -> BoxFuture<'_, Outcome> {
    Box::pin(serve(client, svc))
}
