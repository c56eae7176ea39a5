//! App passwords (issue 14): per-device passwords a user creates on the
//! self-service site after signing in at the OpenID provider, bound to
//! that identity at the provider.
//!
//! This module is the interface the site (`crate::web`) and the login path
//! share; the stores implementing it (SQLite, PostgreSQL) live beside it.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// One app password as listed (never the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    /// Stable id within the owner's list.
    pub id: String,
    /// The owner: the upstream user name the password logs in as.
    pub user: String,
    /// What the user called it ("Phone", "Outlook at work").
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub last_used: Option<LastUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    pub at: i64,
    pub client: String,
    pub protocol: String,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the app-password store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the site and the administration commands need from the store.
pub trait Store: Send + Sync {
    /// Creates an app password for `user`; returns its record and the
    /// password itself, shown once and never stored.
    fn create<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(AppPassword, Secret), StoreError>>;
    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<AppPassword>, StoreError>>;
    /// Revokes one (by id) or, with `None`, all of `user`'s; returns how many.
    fn revoke<'a>(
        &'a self,
        user: &'a str,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;
}
