//! Test support for in-process transcript tests of the front-end sessions
//! (imap-next and mini-redis style): a [`Service`] built from a
//! configuration text exactly as the server builds it, tokens signed with
//! the test directory's HS256 secret (validated locally, no network), fake
//! upstreams on `127.0.0.1:0` ([`fake`]) and a client that drives one
//! session over a loopback TCP pair ([`Conn`]). Every wait is bounded by
//! [`TIMEOUT`]; nothing outside the test process is involved.
//!
//! The connection limiter and its failure penalty are process-wide
//! (`Limiter::shared`): every configuration here sets
//! `auth-failure-delay = "0s"`, so that no test waits on another's failures.

mod conn;
pub mod fake;

pub use conn::{Conn, PEER};
pub use fake::{down_address, Upstream};

use crate::gateway::Service;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Every read of a transcript, and the end of a session, waits at most this.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The test directory's HS256 secret.
pub const SECRET: &str = "transcript-tests-hs256-secret-0123456789";
/// The proxy's master password at the fake upstreams.
pub const MASTER: &str = "master-secret";
/// The user every good token is for.
pub const USER: &str = "alice@example.com";

/// How the listener under test is configured (`tls = "none"`).
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub protocol: &'static str,
    pub passthrough: bool,
    pub password_tokens: bool,
    pub max_auth_failures: u32,
    pub pre_auth_timeout: &'static str,
    pub idle_timeout: &'static str,
}

impl Listener {
    pub fn imap() -> Self {
        Self::new("imap")
    }

    pub fn smtp() -> Self {
        Self::new("smtp")
    }

    fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            passthrough: false,
            password_tokens: false,
            max_auth_failures: 3,
            pre_auth_timeout: "10s",
            idle_timeout: "35m",
        }
    }

    /// `password-passthrough = true`.
    pub fn passthrough(mut self) -> Self {
        self.passthrough = true;
        self
    }

    /// `password-tokens = true` (with passthrough: JWT-shaped passwords).
    pub fn password_tokens(mut self) -> Self {
        self.password_tokens = true;
        self
    }

    pub fn max_auth_failures(mut self, n: u32) -> Self {
        self.max_auth_failures = n;
        self
    }

    /// `pre-auth-timeout` and `idle-timeout`, e.g. `"1s"`.
    pub fn timeouts(mut self, pre_auth: &'static str, idle: &'static str) -> Self {
        self.pre_auth_timeout = pre_auth;
        self.idle_timeout = idle;
        self
    }

    /// The configuration file of this listener, its upstream at `upstream`.
    pub fn config(&self, upstream: &str) -> String {
        let login = match self.protocol {
            "smtp" => "login.method = \"xclient\"".to_string(),
            _ => format!(
                "login.method = \"master-user\"\nlogin.username = \"proxy\"\nlogin.secret = \"{MASTER}\""
            ),
        };
        format!(
            r#"
[server]
hostname = "proxy.test"

[server.limits]
pre-auth-timeout = "{pre_auth}"
idle-timeout = "{idle}"
auth-failure-delay = "0s"
max-auth-failures = {failures}

[listener.front]
protocol = "{protocol}"
bind = "127.0.0.1:0"
tls = "none"
directory = "idp"
upstream = "up"
password-passthrough = {passthrough}
password-tokens = {tokens}

[upstream.up]
address = "{upstream}"
tls = "none"
{login}
identity = "email"
connect-timeout = "2s"

[directory.idp]
type = "oidc"
endpoint.method = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"
required-scope = "mail"
fields.email = "email"
fields.username = "preferred_username"
"#,
            failures = self.max_auth_failures,
            pre_auth = self.pre_auth_timeout,
            idle = self.idle_timeout,
            protocol = self.protocol,
            passthrough = self.passthrough,
            tokens = self.password_tokens,
        )
    }

    /// The listener's run-time service, through `Config::parse` and
    /// `server::build` as the proxy makes it.
    pub fn service(&self, upstream: &str) -> Arc<Service> {
        let config = crate::config::Config::parse(&self.config(upstream))
            .unwrap_or_else(|e| panic!("test configuration: {e}"));
        let mut services =
            crate::server::build(&config).unwrap_or_else(|e| panic!("test service: {e}"));
        assert_eq!(services.len(), 1);
        services.remove(0)
    }
}

/// A JWT access token (RFC 9068 `typ: at+jwt`) with these claims, signed
/// with `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    let header = jsonwebtoken::Header {
        typ: Some("at+jwt".into()),
        ..Default::default()
    };
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}

fn claims(email: &str, scope: &str, expires_in: i64) -> Value {
    json!({
        "exp": crate::idp::cache::unix_now() + expires_in,
        "email": email,
        "preferred_username": email.split('@').next().unwrap_or(email),
        "scope": scope,
    })
}

/// A valid token for `email` with the required scope.
pub fn token_for(email: &str) -> String {
    sign(&claims(email, "openid mail", 300), SECRET)
}

/// A valid token for [`USER`].
pub fn token() -> String {
    token_for(USER)
}

/// A token for [`USER`] signed with another key (`invalid_token`).
pub fn forged_token() -> String {
    sign(
        &claims(USER, "openid mail", 300),
        "another-secret-0123456789-0123456789",
    )
}

/// A well-signed token for [`USER`] without the `mail` scope.
pub fn unscoped_token() -> String {
    sign(&claims(USER, "openid", 300), SECRET)
}

/// A well-signed token for [`USER`] that expired an hour ago.
pub fn expired_token() -> String {
    sign(&claims(USER, "openid mail", -3600), SECRET)
}

/// Base64 of `text`.
pub fn b64(text: &str) -> String {
    crate::sasl::encode(text.as_bytes())
}

/// An OAUTHBEARER initial response (RFC 7628 §3.1), base64.
pub fn oauthbearer(authzid: Option<&str>, token: &str) -> String {
    let a = authzid.map(|a| format!("a={a}")).unwrap_or_default();
    b64(&format!("n,{a},\x01auth=Bearer {token}\x01\x01"))
}

/// An XOAUTH2 initial response, base64.
pub fn xoauth2(user: &str, token: &str) -> String {
    b64(&format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// A SASL PLAIN response, base64.
pub fn plain(authzid: &str, user: &str, password: &str) -> String {
    b64(&format!("{authzid}\0{user}\0{password}"))
}

/// The JSON of an RFC 7628 error challenge line (`+ <base64>`, `334 <base64>`).
pub fn challenge_json(line: &str, prefix: &str) -> Value {
    let data = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("not a {prefix:?} challenge: {line:?}"));
    let json = crate::sasl::decode_response(data.as_bytes())
        .unwrap_or_else(|| panic!("challenge is not base64: {line:?}"));
    serde_json::from_slice(&json).unwrap_or_else(|e| panic!("challenge is not JSON: {e}"))
}
