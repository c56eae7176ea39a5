//! The POP3 front-end (RFC 1939 AUTHORIZATION state, CAPA RFC 2449, STLS
//! RFC 2595, AUTH RFC 5034 with initial responses, response codes RFC 3206).
//!
//! - [`command`]: parsing command lines.
//! - [`reply`]: the greeting, CAPA, and the mapping from login failures to replies.

pub mod command;
pub mod reply;
