//! The OpenID Connect authorization code flow with PKCE (RFC 7636, S256),
//! `state` and `nonce`, as a confidential client (`client.id`,
//! `client.secret`, sent as HTTP Basic, RFC 6749 §2.3.1): discovery of the
//! authorization and token endpoints and the JWKS, the authorization
//! request, the code exchange, and the refresh the standing check makes.

use crate::config::Directory;
use crate::idp::http;
use crate::idp::jwks::{Jwks, Source};
use crate::idp::Stats;
use crate::secret::Secret;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Why a sign-in ends on the refusal page. The page shows [`Refusal::title`];
/// the log line the reason (never a token, code or secret).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("the sign-in's state is unknown, used up or from another browser")]
    State,
    #[error("the provider refused the sign-in: {0}")]
    Provider(String),
    #[error("ID token refused: {0}")]
    IdToken(&'static str),
    #[error("the provider's claims name no usable user: {0}")]
    Claims(String),
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("app-password store: {0}")]
    Store(String),
}

impl Refusal {
    /// What the page says (no internal detail beyond the kind of failure).
    pub fn title(&self) -> &'static str {
        match self {
            Refusal::Csrf => "The form expired or did not come from this site. Please try again.",
            Refusal::State => "This sign-in link is no longer valid (used, expired or from another browser). Please sign in again.",
            Refusal::Provider(_) => "The identity provider refused the sign-in.",
            Refusal::IdToken(_) => "The identity provider's answer could not be verified.",
            Refusal::Claims(_) => "Your account at the identity provider does not name a mailbox.",
            Refusal::Unavailable(_) => "The identity provider cannot be reached right now. Please try again later.",
            Refusal::Store(_) => "App passwords are unavailable right now. Please try again later.",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unavailable(_) | Refusal::Store(_) => 503,
            _ => 400,
        }
    }
}

/// The provider's endpoints (OpenID Connect Discovery 1.0).
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub userinfo: Option<String>,
    pub jwks: Arc<Jwks>,
}

/// A directory's provider as the site's client sees it.
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    client_secret: Option<Secret>,
    pub redirect_uri: String,
    pub skew_secs: i64,
    http: reqwest::Client,
    stats: Arc<Stats>,
    name: String,
    endpoints: OnceCell<Endpoints>,
}

/// What the token endpoint answered to a code or a refresh token.
pub struct Tokens {
    pub id_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
}

/// The outcome of a refresh (the standing check).
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// Still active; the provider may have rotated the refresh token.
    Active(Option<String>),
    /// 400/401, or an empty answer: the user is disabled (or the grant revoked).
    Refused,
}

impl Provider {
    /// `None` when the directory has no `client.id` or `issuer`.
    pub fn new(directory: &Directory, redirect_uri: String) -> Result<Option<Self>, String> {
        let (Some(client), Some(issuer)) = (&directory.client, &directory.issuer) else {
            return Ok(None);
        };
        Ok(Some(Self {
            issuer: issuer.clone(),
            client_id: client.id.clone(),
            client_secret: client.secret.clone(),
            redirect_uri,
            skew_secs: directory.clock_skew.as_secs() as i64,
            http: http::client(directory)?,
            stats: Arc::new(Stats::default()),
            name: directory.name.clone(),
            endpoints: OnceCell::new(),
        }))
    }

    /// The endpoints, by discovery on first need (a failure is retried by
    /// the next sign-in).
    pub async fn endpoints(&self) -> Result<&Endpoints, Refusal> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = crate::idp::discovery::url(&self.issuer);
                let (doc, _) = http::get_json(&self.http, &url, &self.stats)
                    .await
                    .map_err(|e| Refusal::Unavailable(e.reason()))?;
                let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
                if named.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
                    return Err(Refusal::Unavailable(
                        "discovery names another issuer".into(),
                    ));
                }
                let url = |k: &str| {
                    doc.get(k)
                        .and_then(Value::as_str)
                        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                        .map(str::to_string)
                        .ok_or_else(|| Refusal::Unavailable(format!("discovery has no {k}")))
                };
                let jwks = Jwks::new(
                    Source::Url(url("jwks_uri")?),
                    self.http.clone(),
                    self.stats.clone(),
                    &self.name,
                );
                Ok(Endpoints {
                    authorization: url("authorization_endpoint")?,
                    token: url("token_endpoint")?,
                    userinfo: url("userinfo_endpoint").ok(),
                    jwks: Arc::new(jwks),
                })
            })
            .await
    }

    /// The authorization request URL (OIDC Core §3.1.2.1).
    pub fn authorize_url(
        &self,
        endpoint: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, Refusal> {
        let mut url = url::Url::parse(endpoint)
            .map_err(|_| Refusal::Unavailable("authorization_endpoint is not a URL".into()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid email profile offline_access")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            // oidc-provider and others issue a refresh token for
            // offline_access only after consent.
            .append_pair("prompt", "consent");
        Ok(url.into())
    }

    /// Redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<Tokens, Refusal> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", verifier),
        ];
        let (status, body) = self.token_request(&form).await?;
        if status != 200 {
            let error = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no error code")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(match status {
                400 | 401 => Refusal::Provider(error),
                _ => Refusal::Unavailable(format!("token endpoint answered {status}")),
            });
        }
        let body = body.unwrap_or_default();
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(Secret::new);
        Ok(Tokens {
            id_token: text("id_token"),
            access_token: text("access_token"),
            refresh_token: text("refresh_token"),
        })
    }

    /// The UserInfo claims (OIDC Core §5.3) for the sign-in's access token:
    /// providers that keep the ID token small (`openid` claims only) give
    /// `email` and `preferred_username` there.
    pub async fn userinfo(
        &self,
        access_token: &Secret,
    ) -> Result<serde_json::Map<String, Value>, Refusal> {
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.userinfo else {
            return Err(Refusal::Claims("no userinfo_endpoint to ask".into()));
        };
        let request = self.http.get(url).bearer_auth(access_token.expose());
        let response = http::send(request)
            .await
            .map_err(|e| Refusal::Unavailable(e.reason()))?;
        if response.status().as_u16() != 200 {
            return Err(Refusal::Unavailable(format!(
                "userinfo answered {}",
                response.status()
            )));
        }
        http::json_object(response)
            .await
            .map_err(|e| Refusal::Unavailable(e.reason()))
    }

    /// Uses a refresh token (RFC 6749 §6): is the user still active? Any
    /// 400 or 401 (or an empty answer) says no, except `invalid_client`,
    /// which is about the site's credentials and says nothing of the user.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Standing, Refusal> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let (status, body) = self.token_request(&form).await?;
        let error = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str);
        if matches!(status, 400 | 401) && error == Some("invalid_client") {
            // The provider refused the site, not the user: a rotated
            // `client.secret` must not disable every user at once.
            return Err(Refusal::Unavailable(
                "the provider refused the site's own client credentials (invalid_client): \
                 check `client.id` and `client.secret`"
                    .into(),
            ));
        }
        Ok(match (status, body) {
            (200, Some(body)) if !body.is_empty() => Standing::Active(
                body.get("refresh_token")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
            (200, _) | (400, _) | (401, _) => Standing::Refused,
            (other, _) => {
                return Err(Refusal::Unavailable(format!(
                    "token endpoint answered {other}"
                )))
            }
        })
    }

    /// POSTs `form` to the token endpoint with the client's credentials;
    /// the status and the JSON object answered, if any.
    async fn token_request(
        &self,
        form: &[(&str, &str)],
    ) -> Result<(u16, Option<serde_json::Map<String, Value>>), Refusal> {
        let endpoint = &self.endpoints().await?.token;
        let mut form = form.to_vec();
        if self.client_secret.is_none() {
            form.push(("client_id", &self.client_id));
        }
        let mut request = self.http.post(endpoint).form(&form);
        if let Some(secret) = &self.client_secret {
            request = request.basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(secret.expose())),
            );
        }
        let response = http::send(request)
            .await
            .map_err(|e| Refusal::Unavailable(e.reason()))?;
        let status = response.status().as_u16();
        Ok((status, http::json_object(response).await.ok()))
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
