//! What a login was granted on: the facts the session registry keeps.

use crate::idp::{Identity, Validator};
use crate::secret::Secret;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How a session authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A SASL bearer mechanism (OAUTHBEARER, XOAUTH2).
    Token,
    /// A password that is a token (`password-tokens`).
    PasswordToken,
    /// The upstream checked the client's own password (`password-passthrough`).
    Passthrough,
    /// An app password from the store (`app-passwords`).
    AppPassword,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Token => "token",
            How::PasswordToken => "password-token",
            How::Passthrough => "passthrough",
            How::AppPassword => "app-password",
        }
    }
}

/// A successful login's credential facts.
#[derive(Clone)]
pub struct Grant {
    pub how: How,
    /// The directory that validated the token.
    pub validator: Option<Arc<Validator>>,
    /// The token itself, held in memory only while a session uses it, for
    /// re-validation; never listed, never logged.
    pub token: Option<Arc<Secret>>,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub exp: Option<i64>,
    /// The app password's id (`How::AppPassword`), shown by `who` as the
    /// credential and used to end its sessions when it is revoked.
    pub app_password: Option<String>,
}

impl Grant {
    /// A token login's grant.
    pub fn token(how: How, validator: Arc<Validator>, token: &Secret, identity: &Identity) -> Self {
        Self {
            how,
            validator: Some(validator),
            token: Some(Arc::new(token.clone())),
            sub: identity.sub.clone(),
            sid: identity.sid.clone(),
            exp: identity.exp,
            app_password: None,
        }
    }

    /// An app-password login's grant: nothing to re-validate at a provider.
    pub fn app_password(id: &str) -> Self {
        Self {
            how: How::AppPassword,
            app_password: Some(id.to_string()),
            ..Self::passthrough()
        }
    }

    /// A passthrough login's grant: no token, nothing to re-validate.
    pub fn passthrough() -> Self {
        Self {
            how: How::Passthrough,
            validator: None,
            token: None,
            sub: None,
            sid: None,
            exp: None,
            app_password: None,
        }
    }

    pub fn directory(&self) -> Option<&str> {
        self.validator.as_deref().map(|v| v.name())
    }

    /// The token's key: the SHA-256 of the token (as the cache keys it).
    pub fn token_key(&self) -> Option<[u8; 32]> {
        self.token
            .as_deref()
            .map(|t| Sha256::digest(t.expose().as_bytes()).into())
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("how", &self.how)
            .field("directory", &self.directory())
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// The short, non-reversible name of a credential shown by `who`: the
/// first 12 hex digits of its SHA-256.
pub fn fingerprint(key: &[u8; 32]) -> String {
    key[..6].iter().map(|b| format!("{b:02x}")).collect()
}
