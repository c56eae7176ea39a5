//! The SMTP submission front-end (RFC 5321 pre-authentication, STARTTLS
//! RFC 3207, AUTH RFC 4954, RFC 7628 §4.4 for OAUTHBEARER in SMTP).
//!
//! - [`command`]: parsing command lines (verb, EHLO name, AUTH arguments).
//! - [`reply`]: the EHLO keyword list and the mapping from login failures
//!   to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.
//! - [`wire`]: SMTP's syntax for the shared login path ([`crate::login`]).

pub mod command;
pub mod reply;
pub mod session;
pub mod wire;

pub use session::serve;

use crate::client::Client;
use crate::frontend::Frontend;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// The SMTP submission front-end, as the server and the limits see it.
pub static FRONTEND: Frontend = Frontend {
    alpn: &[b"smtp"],
    greeting: |svc, _| Some(reply::banner(svc)),
    serve: serve_boxed,
    idle_farewell: |svc| format!("421 4.4.2 {} Error: timeout exceeded\r\n", svc.hostname),
    ended: |svc, why| format!("421 4.7.0 {} {why}\r\n", svc.hostname),
    over_limit: |hostname, what| format!("421 4.7.0 {hostname} {what}, try again later.\r\n"),
};

fn serve_boxed(client: Client, svc: &Service) -> BoxFuture<'_, Outcome> {
    Box::pin(serve(client, svc))
}
