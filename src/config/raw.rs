//! The configuration file exactly as written: serde structures that mirror
//! the TOML keys (including Stalwart's dotted `[directory.*]` keys). Nothing
//! here is validated; `config::Config::from_raw` turns this into typed values.
//! Secret-bearing keys (`login.secret`, `auth.secret`, `auth.token`, a JWT
//! directory's `secret`) are read straight into [`Secret`]: redacted in
//! `Debug`, wiped when dropped, and never quoted in a type error.

use crate::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub listener: BTreeMap<String, RawListener>,
    #[serde(default)]
    pub upstream: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub directory: BTreeMap<String, RawDirectory>,
    /// Where app passwords are kept.
    pub store: Option<RawStore>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStore {
    pub url: Option<String>,
    pub password: Option<Secret>,
    pub hash_key: Option<Secret>,
    /// PostgreSQL: the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServer {
    pub hostname: Option<String>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub limits: RawLimits,
    pub log_format: Option<String>,
    /// How long a graceful stop waits for sessions to finish.
    pub shutdown_timeout: Option<String>,
    /// The HTTP listener (`/metrics`, `/healthz`, back-channel logout).
    pub http: Option<RawHttp>,
    /// The older name of `http` (an alias).
    pub metrics: Option<RawHttp>,
    /// Session threads (default: one per CPU).
    pub workers: Option<i64>,
    /// The local administration socket (`who`, `kick`).
    pub control_socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub bind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub session_tickets: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    pub pre_auth_timeout: Option<String>,
    pub max_line: Option<String>,
    pub max_auth_failures: Option<u32>,
    pub auth_failure_delay: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

/// A single address or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawListener {
    pub protocol: String,
    pub bind: OneOrMany,
    pub tls: Option<String>,
    /// One directory, or a list: a JWT goes to the one whose `issuer`
    /// matches, an opaque token tries them in order.
    pub directory: OneOrMany,
    /// Required except on an `https` listener (the self-service site).
    #[serde(default)]
    pub upstream: String,
    #[serde(default)]
    pub password_passthrough: bool,
    /// LOGIN / AUTH PLAIN / AUTH LOGIN with a bearer token as the password.
    #[serde(default)]
    pub password_tokens: bool,
    /// The `status` sent in XOAUTH2 error challenges (Google's form). Some
    /// clients (K-9) fetch a new token only on "400".
    pub xoauth2_error_status: Option<String>,
    /// Expect a PROXY protocol (v1 or v2) header before anything else.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Who may send that header (CIDR networks); required with `proxy-protocol`.
    pub proxy_trusted_networks: Option<Vec<String>>,
    /// The name mail clients are told (autoconfig, `.mobileconfig`).
    pub public_name: Option<String>,
    /// `https` listeners: the site's base URL (ends in `/`).
    pub public_url: Option<String>,
    /// `https` listeners: the session cookie's HMAC key (a secret value).
    pub cookie_key: Option<Secret>,
    /// LOGIN / AUTH PLAIN / AUTH LOGIN with an app password (issue 14).
    #[serde(default)]
    pub app_passwords: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpstream {
    /// Which protocol the upstream speaks; inferred from its listeners when absent.
    pub protocol: Option<String>,
    /// One backend; or `backends` (several, see `config::backends`).
    pub address: Option<String>,
    pub backends: Option<Vec<super::backends::RawBackend>>,
    pub routing: Option<super::backends::RawRouting>,
    pub failover: Option<bool>,
    pub health: Option<super::backends::RawHealth>,
    pub tls: Option<String>,
    pub tls_ca: Option<String>,
    /// Server name checked against the upstream certificate (default: the address's host).
    pub tls_name: Option<String>,
    pub login: Option<RawLogin>,
    pub identity: Option<String>,
    /// How the identity's letter case is handled ("require-lower", "lower", "exact").
    pub identity_case: Option<String>,
    pub connect_timeout: Option<String>,
    /// `"v2"`: send a PROXY protocol v2 header with the client's address.
    pub proxy_protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub method: String,
    pub username: Option<String>,
    pub secret: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDirectory {
    #[serde(rename = "type")]
    pub kind: String,
    pub timeout: Option<String>,
    pub endpoint: Option<RawEndpoint>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub fields: RawFields,
    pub required_scope: Option<String>,
    /// The provider's issuer: discovery (`<issuer>/.well-known/openid-configuration`)
    /// gives the endpoints and JWKS; it is named in RFC 7628 error replies.
    pub issuer: Option<String>,
    pub tls_ca: Option<String>,
    /// Required `aud` of JWT access tokens (and of introspection answers).
    pub audience: Option<String>,
    /// JWT signature algorithms accepted.
    pub algorithms: Option<Vec<String>>,
    /// Shared secret for HS256/384/512.
    pub secret: Option<Secret>,
    /// Tolerated clock skew on `exp` / `nbf`.
    pub clock_skew: Option<String>,
    pub jwks: Option<RawJwks>,
    /// `jwt.allow-untyped`: the RFC 9068 `typ` opt-out.
    pub jwt: Option<RawJwtOptions>,
    /// Accept tokens without a required audience or scope (loudly).
    pub allow_any_audience: Option<bool>,
    pub cache: Option<RawCache>,
    /// `session.revalidate`, `session.at-expiry`.
    pub session: Option<RawSession>,
    /// `backchannel-logout.audience`.
    pub backchannel_logout: Option<RawBackchannelLogout>,
    /// `client.id`, `client.secret`: the self-service site's OIDC client.
    pub client: Option<RawClient>,
    /// `app-passwords.standing-check`, `.max-age`, `.unreachable-grace`.
    pub app_passwords: Option<RawAppPasswords>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawClient {
    pub id: String,
    pub secret: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAppPasswords {
    pub standing_check: Option<String>,
    pub max_age: Option<String>,
    pub unreachable_grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSession {
    pub revalidate: Option<String>,
    pub at_expiry: Option<super::session::AtExpiry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBackchannelLogout {
    pub audience: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawJwtOptions {
    pub allow_untyped: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCache {
    pub ttl: Option<String>,
    pub negative_ttl: Option<String>,
    pub max_entries: Option<u64>,
    pub stale_if_error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub url: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub method: Option<String>,
    pub username: Option<String>,
    pub secret: Option<Secret>,
    pub token: Option<Secret>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFields {
    pub email: Option<String>,
    pub username: Option<String>,
    pub full_name: Option<String>,
}
