//! The local administration socket: a Unix socket (mode 0600, and only
//! the service's own user or root may talk on it) serving one JSON request
//! per connection and answering with one JSON reply line.
//!
//! - [`server`]: the listener in the running proxy.
//! - [`client`]: the `who`, `kick` and `app-passwords` subcommands.
//!
//! Requests are `{"command": "..."}` objects; new administration commands
//! are new [`Request`] variants.

pub mod client;
pub mod server;

use crate::sessions::Info;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The largest request accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// List the relayed sessions.
    Who,
    /// End the sessions of a user, a token subject or a client address.
    Kick(Target),
    /// A user's app passwords.
    AppPasswordsList { user: String },
    /// Create an app password for a user (the administrator's way; users
    /// have the self-service site). The reply carries the password, once.
    AppPasswordsCreate { user: String, name: String },
    /// Revoke a user's app passwords: the one called `name` (or with that
    /// id), or all of them; their open sessions end.
    AppPasswordsRevoke {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

/// Which sessions `kick` ends: exactly one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Sessions {
        sessions: Vec<Info>,
    },
    Ended {
        ended: usize,
    },
    AppPasswords {
        app_passwords: Vec<crate::apppass::AppPassword>,
        /// The owner's standing at the provider.
        #[serde(default)]
        standing: crate::apppass::Standing,
    },
    Revoked {
        revoked: usize,
        sessions_ended: usize,
    },
    /// A new app password, shown once.
    Created {
        app_password: crate::apppass::AppPassword,
        password: String,
    },
    Error {
        error: String,
    },
}
