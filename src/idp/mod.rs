//! Token validation against the identity provider.
//!
//! A [`Validator`] is built once per `[directory.*]` (one pooled HTTPS client
//! each) and answers one question: which identity does this bearer token
//! belong to? The answer is an [`Identity`] or an [`Error`] that says whether
//! the token was refused (the client's problem) or the provider could not
//! answer (a temporary failure, never reported as a bad token).
//! [`Directories`] (in [`directories`]) is a listener's ordered list of validators.
//!
//! - [`userinfo`]: OIDC UserInfo (GET with `Authorization: Bearer`).
//! - [`introspect`]: RFC 7662 token introspection.
//! - [`answer`]: what a provider's refusal means, by whose credential it judged.
//! - [`jwt`], [`jwks`]: local validation of JWT access tokens.
//! - [`discovery`]: endpoints and keys from the issuer's discovery document.
//! - [`cache`]: the bounded token-result cache; [`stats`]: its counters.
//! - [`claims`]: mapping claims to an identity through `fields.*`.
//! - [`hygiene`]: is it an access token meant for us (`typ`, ID tokens,
//!   `crit`, `cnf`, `email_verified`, UserInfo scopes).
//! - [`logout`], [`logout_verifier`], [`replay`]: OpenID Connect
//!   Back-Channel Logout tokens.

pub mod answer;
pub mod cache;
pub mod claims;
pub mod directories;
pub mod discovery;
pub(crate) mod http;
pub mod hygiene;
#[cfg(test)]
mod hygiene_tests;
pub mod introspect;
pub mod jwks;
pub mod jwt;
#[cfg(test)]
mod jwt_tests;
pub mod logout;
#[cfg(test)]
mod logout_tests;
pub mod logout_verifier;
mod recheck;
pub mod replay;
pub mod stats;
pub mod userinfo;

use crate::config::{Directory, Endpoint, IdentityField, IntrospectAuth};
use crate::secret::Secret;
use discovery::Discovery;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use claims::Identity;
pub use directories::Directories;
pub use stats::{Snapshot, Stats};

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

impl Error {
    /// The message without the "token refused" / "provider unavailable" prefix.
    pub fn reason(&self) -> String {
        match self {
            Error::Rejected(r) => r.to_string(),
            Error::Unavailable(why) => why.clone(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    InvalidToken(String),
    #[error("token lacks the required scope `{0}`")]
    InsufficientScope(String),
    #[error("claim `{0}` missing or unusable in the provider's answer")]
    MissingClaim(String),
}

enum Method {
    UserInfo {
        url: Option<String>,
    },
    Introspect {
        url: Option<String>,
        auth: IntrospectAuth,
    },
    Jwt(jwt::JwtValidator),
}

pub struct Validator {
    directory: Directory,
    http: reqwest::Client,
    method: Method,
    discovery: Option<Arc<Discovery>>,
    cache: Option<cache::Cache>,
    stats: Arc<Stats>,
    started: AtomicBool,
    /// With `backchannel-logout`: checks the provider's logout tokens.
    logout: Option<logout_verifier::Verifier>,
}

/// A validation's full answer, for `verify-token`.
#[derive(Debug)]
pub struct Inspection {
    pub identity: Arc<Identity>,
    pub claims: Map<String, Value>,
}

impl Validator {
    pub fn new(directory: Directory) -> Result<Self, String> {
        let http = http::client(&directory)?;
        let stats = Arc::new(Stats::for_directory(&directory.name));
        stats::publish(&stats);
        let discovery = directory
            .issuer
            .as_deref()
            .map(|i| Arc::new(Discovery::new(i)));
        let method = match &directory.endpoint {
            Endpoint::UserInfo { url } => Method::UserInfo { url: url.clone() },
            Endpoint::Introspect { url, auth } => Method::Introspect {
                url: url.clone(),
                auth: auth.clone(),
            },
            Endpoint::Jwt(settings) => {
                let source = match (&settings.jwks_url, &discovery) {
                    (Some(url), _) => Some(jwks::Source::Url(url.clone())),
                    (None, Some(d)) => Some(jwks::Source::Discovery(d.clone())),
                    (None, None) => None,
                };
                let jwks = source.map(|s| {
                    Arc::new(jwks::Jwks::new(
                        s,
                        http.clone(),
                        stats.clone(),
                        &directory.name,
                    ))
                });
                let expect = jwt::Expect {
                    issuer: directory.issuer.as_deref(),
                    audience: directory.audience.as_deref(),
                    leeway_secs: directory.clock_skew.as_secs(),
                    required_scope: directory.required_scope.as_deref(),
                };
                Method::Jwt(jwt::JwtValidator::new(settings, &expect, jwks))
            }
        };
        let cache = directory
            .cache
            .enabled()
            .then(|| cache::Cache::new(directory.cache.clone()));
        let jwt_jwks = match &method {
            Method::Jwt(j) => j.jwks().cloned(),
            _ => None,
        };
        let logout = logout_verifier::Verifier::for_directory(
            &directory,
            jwt_jwks,
            discovery.as_ref(),
            &http,
            &stats,
        );
        Ok(Self {
            directory,
            http,
            method,
            discovery,
            cache,
            stats,
            started: AtomicBool::new(false),
            logout,
        })
    }

    /// Starts background work (the JWKS fetch and refresh). Idempotent;
    /// needs a Tokio runtime.
    pub fn start(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Method::Jwt(j) = &self.method {
            if let Some(jwks) = j.jwks() {
                jwks.spawn_refresher();
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.directory.name
    }

    pub fn issuer(&self) -> Option<&str> {
        self.directory.issuer.as_deref()
    }

    pub fn is_jwt(&self) -> bool {
        matches!(self.method, Method::Jwt(_))
    }

    /// This directory's counters (for metrics).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// After a reload: takes over `previous`'s cached token results when
    /// the directory is configured exactly as before (endpoint, fields,
    /// issuer, audience, scope, cache settings, ...), so that a reload, say
    /// for a renewed certificate, does not send every client back to the
    /// provider at once. The HTTP client, keys and discovery stay fresh (a
    /// renewed CA file is read again). Returns whether it did.
    pub fn keep_cache_of(&mut self, previous: &Validator) -> bool {
        match (&self.cache, &previous.cache) {
            (Some(_), Some(old)) if self.directory == previous.directory => {
                self.cache = Some(old.clone());
                true
            }
            _ => false,
        }
    }

    /// How many token results the cache holds now (approximate; 0 without a cache).
    pub fn cache_entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.entry_count())
    }

    /// The scope a token needs, for error challenges.
    pub fn required_scope(&self) -> Option<&str> {
        self.directory.required_scope.as_deref()
    }

    /// The provider's discovery URL, for RFC 7628 error challenges.
    pub fn openid_configuration(&self) -> Option<String> {
        self.discovery.as_ref().map(|d| d.url().to_string())
    }

    /// Validates `token` and returns the identity it belongs to. `need` is
    /// the field the upstream logs in with: it must be present.
    pub async fn validate(
        &self,
        token: &Secret,
        need: IdentityField,
    ) -> Result<Arc<Identity>, Error> {
        let identity = match &self.cache {
            Some(cache) => {
                cache
                    .get_or_validate(
                        cache::key(token.expose()),
                        &self.stats,
                        &self.directory.name,
                        || async {
                            let (identity, claims) = self.check(token).await?;
                            Ok(cache::Valid {
                                identity,
                                exp: claims.get("exp").and_then(Value::as_i64),
                            })
                        },
                    )
                    .await?
            }
            None => {
                self.stats.miss();
                self.check(token).await?.0
            }
        };
        claims::require(&identity, &self.directory.fields, need)?;
        Ok(identity)
    }

    /// What an introspection answer must say for this directory.
    fn introspect_expect(&self) -> introspect::Expect<'_> {
        introspect::Expect {
            required_scope: self.directory.required_scope.as_deref(),
            audience: self.directory.audience.as_deref(),
            issuer: self.directory.issuer.as_deref(),
            leeway_secs: self.directory.clock_skew.as_secs() as i64,
        }
    }

    /// The logout-token verifier (a directory with `backchannel-logout`).
    pub fn logout(&self) -> Option<&logout_verifier::Verifier> {
        self.logout.as_ref()
    }

    /// The directory's configuration (session policy, logout, issuer).
    pub fn config(&self) -> &Directory {
        &self.directory
    }

    /// Validates without the cache and returns the claims too.
    pub async fn inspect(&self, token: &Secret, need: IdentityField) -> Result<Inspection, Error> {
        let (identity, claims) = self.check(token).await?;
        claims::require(&identity, &self.directory.fields, need)?;
        Ok(Inspection { identity, claims })
    }

    async fn check(&self, token: &Secret) -> Result<(Arc<Identity>, Map<String, Value>), Error> {
        let claims = match &self.method {
            Method::Jwt(j) => j.verify(token.expose()).await?,
            Method::UserInfo { url } => {
                let url = self
                    .endpoint(url.as_deref(), |d| &d.userinfo_endpoint)
                    .await?;
                let claims = self.timed(userinfo::fetch(&self.http, &url, token)).await?;
                if let Some(scope) = self.directory.required_scope.as_deref() {
                    if !hygiene::userinfo_has_scope(&claims, scope) {
                        return Err(Error::Rejected(Rejection::InsufficientScope(
                            scope.to_string(),
                        )));
                    }
                }
                claims
            }
            Method::Introspect { url, auth } => {
                let url = self
                    .endpoint(url.as_deref(), |d| &d.introspection_endpoint)
                    .await?;
                let claims = self
                    .timed(introspect::fetch(&self.http, &url, auth, token))
                    .await?;
                introspect::check(&claims, cache::unix_now(), &self.introspect_expect())?;
                claims
            }
        };
        let identity = claims::identity(&claims, &self.directory.fields)?;
        Ok((Arc::new(identity), claims))
    }

    async fn timed<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let result = request.await;
        self.stats.provider_request(
            started.elapsed(),
            matches!(result, Err(Error::Unavailable(_))),
        );
        result
    }

    /// The configured endpoint URL, or the one from discovery.
    async fn endpoint(
        &self,
        configured: Option<&str>,
        pick: impl Fn(&discovery::Document) -> &Option<String>,
    ) -> Result<String, Error> {
        if let Some(url) = configured {
            return Ok(url.to_string());
        }
        let discovery = self
            .discovery
            .as_ref()
            .ok_or_else(|| Error::Unavailable("no endpoint URL and no issuer".into()))?;
        let doc = discovery.document(&self.http, &self.stats).await?;
        pick(doc).clone().ok_or_else(|| {
            Error::Unavailable("the discovery document does not name this endpoint".into())
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
#[cfg(test)]
use tests as tests_support;
#[cfg(test)]
#[path = "recheck_tests.rs"]
mod recheck_tests;
