//! The IMAP front-end (RFC 3501 pre-authentication state, SASL-IR RFC 4959,
//! RFC 7628 §4 for OAUTHBEARER in IMAP).
//!
//! - [`command`]: parsing command lines (tags, atoms, quoted strings, literals).
//! - [`reply`]: capability lists and the mapping from login failures to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.
//! - [`wire`]: IMAP's syntax for the shared login path ([`crate::login`]).

pub mod command;
pub mod reply;
pub mod session;
pub mod wire;

pub use session::serve;

use crate::client::Client;
use crate::frontend::Frontend;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// The IMAP front-end, as the server and the limits see it.
pub static FRONTEND: Frontend = Frontend {
    alpn: &[b"imap"],
    greeting: |svc, tls| Some(reply::greeting(svc, tls)),
    serve: serve_boxed,
    idle_farewell: |_| reply::INACTIVE.to_string(),
    ended: |_, why| format!("* BYE {why}\r\n"),
    over_limit: |_, what| format!("* BYE [UNAVAILABLE] {what}, try again later.\r\n"),
};

fn serve_boxed(client: Client, svc: &Service) -> BoxFuture<'_, Outcome> {
    Box::pin(serve(client, svc))
}
