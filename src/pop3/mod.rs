//! The POP3 front-end (RFC 1939 AUTHORIZATION state, CAPA RFC 2449, STLS
//! RFC 2595, AUTH RFC 5034 with initial responses, response codes RFC 3206).
//!
//! - [`command`]: parsing command lines.
//! - [`reply`]: the greeting, CAPA, and the mapping from login failures to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.
//! - [`wire`]: POP3's syntax for the shared login path ([`crate::login`]).

pub mod command;
pub mod reply;
pub mod session;
pub mod wire;

pub use session::serve;

use crate::client::Client;
use crate::frontend::Frontend;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// The POP3 front-end, as the server and the limits see it.
pub static FRONTEND: Frontend = Frontend {
    alpn: &[b"pop3"],
    greeting: |svc, _| reply::greeting(svc),
    serve: serve_boxed,
    idle_farewell: |_| reply::IDLE_FAREWELL.to_string(),
    over_limit: |_, what| reply::over_limit(what),
};

fn serve_boxed(client: Client, svc: &Service) -> BoxFuture<'_, Outcome> {
    Box::pin(serve(client, svc))
}
