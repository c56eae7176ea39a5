//! The IMAP front-end (RFC 3501 pre-authentication state, SASL-IR RFC 4959,
//! RFC 7628 §4 for OAUTHBEARER in IMAP).
//!
//! - [`command`]: parsing command lines (tags, atoms, quoted strings, literals).
//! - [`reply`]: capability lists and the mapping from login failures to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.

pub mod command;
pub mod reply;
pub mod session;

pub use session::serve;
