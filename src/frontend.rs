//! The protocol front-ends, registered in one place.
//!
//! A front-end speaks one protocol's pre-login wire syntax and hands every
//! authentication attempt to the shared path in [`crate::login`]. What the
//! rest of the proxy needs to know about it is this descriptor: adding a
//! protocol means a new front-end folder, an upstream login module
//! ([`crate::upstream::strategy`]) and one line in [`of`].

use crate::config::Protocol;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// What the server, the limits and the relay need from a front-end.
pub struct Frontend {
    /// ALPN protocol ids offered on its TLS listeners (RFC 7301): a client
    /// that offers only other ids is refused (ALPACA).
    pub alpn: &'static [&'static [u8]],
    /// The greeting or banner, on a connection that is (`true`) or is not
    /// yet under TLS; on implicit TLS it goes out in the first flight.
    /// `None`: not ready yet (the front-end's `serve` greets instead).
    pub greeting: fn(&Service, bool) -> Option<String>,
    /// Runs the pre-login session, then the relay.
    pub serve: for<'a> fn(crate::client::Client, &'a Service) -> BoxFuture<'a, Outcome>,
    /// Sent before closing a relayed session that was idle too long.
    pub idle_farewell: fn(&Service) -> String,
    /// Sent before closing a relayed session the proxy ends because access
    /// ended (revoked, logout, kicked); the text says why.
    pub ended: fn(&Service, &str) -> String,
    /// The refusal of a connection over a limit (`what` says which),
    /// given the server's host name.
    pub over_limit: fn(&str, &str) -> String,
}

/// The front-end of `protocol`.
pub fn of(protocol: Protocol) -> &'static Frontend {
    match protocol {
        Protocol::Imap => &crate::imap::FRONTEND,
        Protocol::Smtp => &crate::smtp::FRONTEND,
        Protocol::Pop3 => &crate::pop3::FRONTEND,
        Protocol::ManageSieve => &crate::managesieve::FRONTEND,
    }
}
