//! Token validation against the identity provider.
//!
//! A [`Validator`] is built once per `[directory.*]` (one pooled HTTPS client
//! each) and answers one question: which identity does this bearer token
//! belong to? The answer is an [`Identity`] or an [`Error`] that says whether
//! the token was refused (the client's problem) or the provider could not
//! answer (a temporary failure, never reported as a bad token).
//!
//! - [`userinfo`]: OIDC UserInfo (GET with `Authorization: Bearer`).
//! - [`introspect`]: RFC 7662 token introspection.
//! - [`claims`]: mapping claims to an identity through `fields.*`.

pub mod claims;
mod http;
pub mod introspect;
pub mod userinfo;

use crate::config::{Directory, Endpoint, IdentityField};
use crate::secret::Secret;

pub use claims::Identity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider says the token is not good (or its answer does not
    /// identify a usable user).
    #[error("token refused: {0}")]
    Rejected(Rejection),
    /// The provider could not be asked or did not answer usefully.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    InvalidToken(String),
    #[error("token lacks the required scope `{0}`")]
    InsufficientScope(String),
    #[error("claim `{0}` missing or unusable in the provider's answer")]
    MissingClaim(String),
}

pub struct Validator {
    directory: Directory,
    http: reqwest::Client,
}

impl Validator {
    pub fn new(directory: Directory) -> Result<Self, String> {
        let http = http::client(&directory)?;
        Ok(Self { directory, http })
    }

    pub fn name(&self) -> &str {
        &self.directory.name
    }

    /// The scope a token needs, for error challenges.
    pub fn required_scope(&self) -> Option<&str> {
        self.directory.required_scope.as_deref()
    }

    /// The provider's discovery URL, for RFC 7628 error challenges.
    pub fn openid_configuration(&self) -> Option<String> {
        self.directory.issuer.as_ref().map(|i| {
            format!(
                "{}/.well-known/openid-configuration",
                i.trim_end_matches('/')
            )
        })
    }

    /// Validates `token` and returns the identity it belongs to. `need` is
    /// the field the upstream logs in with: it must be present.
    pub async fn validate(&self, token: &Secret, need: IdentityField) -> Result<Identity, Error> {
        let started = tokio::time::Instant::now();
        let claims = self.fetch(token).await;
        crate::metrics::global().provider_request(
            &self.directory.name,
            started.elapsed(),
            matches!(claims, Err(Error::Unavailable(_))),
        );
        claims::map(&claims?, &self.directory.fields, need)
    }

    /// Asks the provider about `token` (one request).
    async fn fetch(
        &self,
        token: &Secret,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        Ok(match &self.directory.endpoint {
            Endpoint::UserInfo { url } => userinfo::fetch(&self.http, url, token).await?,
            Endpoint::Introspect { url, auth } => {
                introspect::fetch(
                    &self.http,
                    url,
                    auth,
                    token,
                    self.directory.required_scope.as_deref(),
                )
                .await?
            }
        })
    }
}
