//! The SMTP submission front-end (RFC 5321 pre-authentication, STARTTLS
//! RFC 3207, AUTH RFC 4954, RFC 7628 §4.4 for OAUTHBEARER in SMTP).
//!
//! - [`command`]: parsing command lines (verb, EHLO name, AUTH arguments).
//! - [`reply`]: the EHLO keyword list and the mapping from login failures
//!   to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.

pub mod command;
pub mod reply;
pub mod session;

pub use session::serve;
