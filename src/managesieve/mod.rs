//! The ManageSieve front-end (RFC 5804, port 4190): the capability
//! greeting, STARTTLS, AUTHENTICATE with OAUTHBEARER / XOAUTH2 (RFC 7628)
//! and PLAIN passthrough, LOGOUT, CAPABILITY, NOOP; then the relay.
//!
//! - [`syntax`]: strings, literals and response lines (pure; the upstream
//!   login uses it too).
//! - [`command`]: parsing pre-authentication commands (pure).
//! - [`read`]: reading a command with its literals, and a SASL response.
//! - [`reply`]: the capability list and the responses.

pub mod command;
pub mod read;
pub mod reply;
pub mod syntax;
