//! Typed, validated configuration.
//!
//! `raw` mirrors the TOML file; [`Config::from_raw`] checks every value,
//! resolves `%{env:NAME}%` / `%{file:PATH}%` secrets and cross-checks the
//! names listeners refer to. A `Config` that exists is usable: the rest of the
//! program never re-validates it. Errors name the offending key.

pub mod hygiene;
#[cfg(test)]
mod hygiene_tests;
pub mod raw;
pub mod units;

pub use crate::proxy_protocol::Network;
use crate::secret::Secret;
pub use hygiene::IdentityCase;
use raw::{RawConfig, RawDirectory, RawListener, RawUpstream};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error, naming the key it is about.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub listeners: Vec<Listener>,
    pub upstreams: BTreeMap<String, Upstream>,
    pub directories: BTreeMap<String, Directory>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub hostname: String,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub log_json: bool,
    /// How long SIGTERM/SIGINT waits for sessions before closing them.
    pub shutdown_timeout: Duration,
    /// Threads that run sessions, each its own event loop (default: one
    /// per CPU). Takes effect at start.
    pub workers: usize,
    /// Where Prometheus scrapes `/metrics` (and `/healthz`), if anywhere.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// TLS 1.3 session tickets sent after a full handshake (0: no
    /// resumption). A client that resumes skips the certificate signature.
    pub session_tickets: usize,
}

/// Tickets sent after a full handshake unless configured (rustls's default).
pub const DEFAULT_SESSION_TICKETS: usize = 2;

#[derive(Debug, Clone)]
pub struct Limits {
    pub pre_auth_timeout: Duration,
    pub max_line: usize,
    pub max_auth_failures: u32,
    pub auth_failure_delay: Duration,
    /// After login: no bytes either way for this long ends the session.
    pub idle_timeout: Duration,
    /// Open client connections, in total and from one IP address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pre_auth_timeout: Duration::from_secs(60),
            max_line: 64 * 1024,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(35 * 60),
            max_connections: 20_000,
            max_connections_per_ip: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    ManageSieve,
}

impl Protocol {
    /// Every protocol, for what is built once per protocol (TLS acceptors).
    pub const ALL: &'static [Protocol] = &[Protocol::Imap, Protocol::Smtp, Protocol::ManageSieve];

    /// The name in the configuration (`protocol = "imap"`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::ManageSieve => "managesieve",
        }
    }
}

/// How a listener (or an upstream) uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    pub binds: Vec<SocketAddr>,
    pub tls: TlsMode,
    /// The directories that validate tokens, in order (at least one).
    pub directories: Vec<String>,
    pub upstream: String,
    pub password_passthrough: bool,
    /// A password that is a bearer token is validated like OAUTHBEARER.
    pub password_tokens: bool,
    pub xoauth2_error_status: String,
    /// Inbound PROXY protocol: `Some(networks)` means every connection must
    /// start with a v1 or v2 header and come from one of these networks.
    pub proxy_protocol: Option<Vec<Network>>,
}

impl Listener {
    /// Whether LOGIN / AUTH PLAIN / AUTH LOGIN are offered: passed through,
    /// or carrying a bearer token as the password.
    pub fn accepts_passwords(&self) -> bool {
        self.password_passthrough || self.password_tokens
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// The protocol it speaks (`protocol = "imap"`); `None`: the protocol
    /// of the listeners that use it (which must then agree).
    pub protocol: Option<Protocol>,
    /// `host:port` as configured (resolved at connect time).
    pub address: String,
    pub tls: TlsMode,
    pub tls_ca: Option<PathBuf>,
    pub tls_name: String,
    pub login: UpstreamLogin,
    pub identity: IdentityField,
    /// How the identity's letter case reaches the upstream (`identity-case`).
    pub identity_case: IdentityCase,
    pub connect_timeout: Duration,
    /// Send a PROXY protocol v2 header with the client's address first.
    pub proxy_protocol_v2: bool,
}

#[derive(Debug, Clone)]
pub enum UpstreamLogin {
    /// SASL PLAIN with authzid = the user, authcid/password = the master credentials.
    MasterUser { username: String, secret: Secret },
    /// Postfix XCLIENT LOGIN=<user> (SMTP only).
    Xclient,
}

/// Which resolved field names the user at the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    Username,
    Email,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    pub name: String,
    pub timeout: Duration,
    pub endpoint: Endpoint,
    pub fields: Fields,
    pub required_scope: Option<String>,
    pub issuer: Option<String>,
    pub tls_ca: Option<PathBuf>,
    /// Required `aud` (JWT and introspection answers).
    pub audience: Option<String>,
    /// Tolerated clock skew on `exp` / `nbf`.
    pub clock_skew: Duration,
    /// Neither audience nor scope required, knowingly (`allow-any-audience`).
    pub allow_any_audience: bool,
    pub cache: CacheSettings,
}

/// How a directory asks about a token. A missing URL comes from the
/// issuer's discovery document (`issuer` is then required).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    UserInfo {
        url: Option<String>,
    },
    Introspect {
        url: Option<String>,
        auth: IntrospectAuth,
    },
    /// Local validation of JWT access tokens.
    Jwt(JwtSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// `jwks.url`; without it, the discovery document's `jwks_uri`.
    pub jwks_url: Option<String>,
    /// Accepted algorithms (never empty; HS* only with a secret).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The HS256/384/512 shared secret.
    pub secret: Option<Secret>,
    /// `jwt.allow-untyped`: also accept `typ: JWT` or no `typ` (RFC 9068
    /// wants `at+jwt`), for providers that do not type their access tokens.
    pub allow_untyped: bool,
}

/// The token-result cache of one directory. `ttl` zero means every login
/// asks the provider (entries then only serve `stale-if-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: u64,
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 100_000,
            stale_if_error: Duration::ZERO,
        }
    }
}

impl CacheSettings {
    pub fn enabled(&self) -> bool {
        !(self.ttl.is_zero() && self.negative_ttl.is_zero() && self.stale_if_error.is_zero())
    }
}

/// Every asymmetric algorithm: the default of `algorithms`.
pub const ASYMMETRIC_ALGORITHMS: &[jsonwebtoken::Algorithm] = {
    use jsonwebtoken::Algorithm::*;
    &[
        ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512, EdDSA,
    ]
};

/// Client authentication towards an RFC 7662 introspection endpoint
/// (Stalwart's `auth.method`).
#[derive(Debug, Clone, PartialEq)]
pub enum IntrospectAuth {
    None,
    Basic {
        username: String,
        secret: Secret,
    },
    Token {
        token: Secret,
    },
    /// RFC 6749 §2.3.1: `client_id` and `client_secret` in the form body.
    ClientSecretPost {
        client_id: String,
        secret: Secret,
    },
    /// The token being introspected is itself the bearer credential.
    UserToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub email: Option<String>,
    pub username: Option<String>,
    pub full_name: Option<String>,
}

impl Config {
    /// Reads, parses and validates the configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        Self::from_raw(raw)
    }

    pub fn from_raw(raw: RawConfig) -> Result<Config> {
        let server = server(raw.server)?;
        let directories = raw
            .directory
            .into_iter()
            .map(|(name, d)| Ok((name.clone(), directory(&name, d)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let upstreams = raw
            .upstream
            .into_iter()
            .map(|(name, u)| Ok((name.clone(), upstream(&name, u)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let listeners = raw
            .listener
            .into_iter()
            .map(|(name, l)| listener(&name, l))
            .collect::<Result<Vec<_>>>()?;
        if listeners.is_empty() {
            return Err(ConfigError::new("listener", "no listener is configured"));
        }
        // Which protocol each upstream speaks, as its first listener says.
        let mut used: BTreeMap<String, (Protocol, String)> = BTreeMap::new();
        for l in &listeners {
            let key = |k: &str| format!("listener.{}.{k}", l.name);
            for d in &l.directories {
                if !directories.contains_key(d) {
                    return Err(ConfigError::new(
                        key("directory"),
                        format!("no [directory.{d}] is configured"),
                    ));
                }
            }
            let Some(up) = upstreams.get(&l.upstream) else {
                return Err(ConfigError::new(
                    key("upstream"),
                    format!("no [upstream.{}] is configured", l.upstream),
                ));
            };
            if l.tls != TlsMode::None && server.tls.is_none() {
                return Err(ConfigError::new(
                    key("tls"),
                    "a TLS listener needs [server.tls] cert and key",
                ));
            }
            let speaks = match (up.protocol, used.get(&l.upstream)) {
                (Some(p), _) => (p, format!("upstream.{}.protocol", up.name)),
                (None, Some((p, by))) => (*p, format!("listener.{by}.protocol")),
                (None, None) => (l.protocol, key("protocol")),
            };
            if speaks.0 != l.protocol {
                return Err(ConfigError::new(
                    key("upstream"),
                    format!(
                        "`{}` speaks {} ({}), but this listener is {}",
                        up.name,
                        speaks.0.name(),
                        speaks.1,
                        l.protocol.name()
                    ),
                ));
            }
            used.insert(l.upstream.clone(), (l.protocol, l.name.clone()));
            if l.protocol != Protocol::Smtp && matches!(up.login, UpstreamLogin::Xclient) {
                return Err(ConfigError::new(
                    format!("upstream.{}.login.method", up.name),
                    format!(
                        "\"xclient\" is SMTP only, but {} listener `{}` uses it",
                        l.protocol.name().to_uppercase(),
                        l.name
                    ),
                ));
            }
        }
        Ok(Config {
            server,
            listeners,
            upstreams,
            directories,
        })
    }

    /// Settings that are allowed but weaken security, one line each: logged
    /// at start-up and reload, printed by `check`.
    pub fn warnings(&self) -> Vec<String> {
        self.directories
            .values()
            .filter(|d| d.allow_any_audience)
            .map(|d| {
                let checked = d.audience.is_some() || d.required_scope.is_some();
                hygiene::any_audience_warning(&d.name, checked)
            })
            .collect()
    }
}

fn server(raw: raw::RawServer) -> Result<Server> {
    let hostname = match raw.hostname {
        Some(h) if !h.trim().is_empty() && !h.contains(char::is_whitespace) => h,
        Some(_) => {
            return Err(ConfigError::new(
                "server.hostname",
                "must be a host name without spaces",
            ))
        }
        None => machine_hostname(),
    };
    let tls = match raw.tls {
        None => None,
        Some(t) => Some(TlsFiles {
            cert: PathBuf::from(t.cert),
            key: PathBuf::from(t.key),
            session_tickets: match t.session_tickets {
                None => DEFAULT_SESSION_TICKETS,
                Some(n @ 0..=8) => n as usize,
                Some(_) => {
                    return Err(ConfigError::new(
                        "server.tls.session-tickets",
                        "must be a whole number from 0 (no resumption) to 8",
                    ))
                }
            },
        }),
    };
    let mut limits = Limits::default();
    let l = raw.limits;
    if let Some(v) = l.pre_auth_timeout {
        limits.pre_auth_timeout = duration("server.limits.pre-auth-timeout", &v)?;
    }
    if let Some(v) = l.max_line {
        limits.max_line =
            units::parse_size(&v).map_err(|e| ConfigError::new("server.limits.max-line", e))?;
        if limits.max_line < 1024 {
            return Err(ConfigError::new(
                "server.limits.max-line",
                "must be at least 1KiB",
            ));
        }
    }
    if let Some(v) = l.max_auth_failures {
        if v == 0 {
            return Err(ConfigError::new(
                "server.limits.max-auth-failures",
                "must be at least 1",
            ));
        }
        limits.max_auth_failures = v;
    }
    if let Some(v) = l.auth_failure_delay {
        limits.auth_failure_delay = duration("server.limits.auth-failure-delay", &v)?;
    }
    if let Some(v) = l.idle_timeout {
        limits.idle_timeout = duration("server.limits.idle-timeout", &v)?;
        if limits.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "server.limits.idle-timeout",
                "must be more than 0",
            ));
        }
    }
    for (key, value, slot) in [
        (
            "max-connections",
            l.max_connections,
            &mut limits.max_connections,
        ),
        (
            "max-connections-per-ip",
            l.max_connections_per_ip,
            &mut limits.max_connections_per_ip,
        ),
    ] {
        if let Some(v) = value {
            if v == 0 {
                return Err(ConfigError::new(
                    format!("server.limits.{key}"),
                    "must be at least 1",
                ));
            }
            *slot = v;
        }
    }
    let log_json = match raw.log_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "server.log-format",
                format!("`{other}` is not one of \"text\", \"json\""),
            ))
        }
    };
    let shutdown_timeout = match raw.shutdown_timeout {
        Some(v) => duration("server.shutdown-timeout", &v)?,
        None => Duration::from_secs(30),
    };
    let metrics = raw
        .metrics
        .map(|m| {
            m.bind.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "server.metrics.bind",
                    format!("`{}` is not an address like \"127.0.0.1:9187\"", m.bind),
                )
            })
        })
        .transpose()?;
    let workers = match raw.workers {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n @ 1..=1024) => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                "server.workers",
                "must be a whole number from 1 to 1024 (leave it out for one per CPU)",
            ))
        }
    };
    Ok(Server {
        hostname,
        tls,
        limits,
        log_json,
        shutdown_timeout,
        metrics,
        workers,
    })
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A TOML syntax or type error, by line and column: never with the text of
/// the line, which may hold a secret (`login.secret = "..."`).
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    ConfigError::new(
        "",
        format!(
            "invalid configuration{}: {}",
            at.unwrap_or_default(),
            e.message().trim_end()
        ),
    )
}

/// The protocol called `name` in the configuration.
fn protocol_named(key: &str, name: &str) -> Result<Protocol> {
    match Protocol::ALL.iter().find(|p| p.name() == name) {
        Some(&p) => Ok(p),
        None => {
            let names: Vec<String> = Protocol::ALL
                .iter()
                .map(|p| format!("\"{}\"", p.name()))
                .collect();
            Err(ConfigError::new(
                key,
                format!("`{name}` is not one of {}", names.join(", ")),
            ))
        }
    }
}

fn listener(name: &str, raw: RawListener) -> Result<Listener> {
    let key = |k: &str| format!("listener.{name}.{k}");
    let protocol = protocol_named(&key("protocol"), &raw.protocol)?;
    let binds = raw
        .bind
        .into_vec()
        .iter()
        .map(|b| {
            b.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    key("bind"),
                    format!("`{b}` is not an address like \"[::]:993\" or \"0.0.0.0:993\""),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if binds.is_empty() {
        return Err(ConfigError::new(key("bind"), "needs at least one address"));
    }
    let tls = tls_mode(&key("tls"), raw.tls.as_deref())?;
    let xoauth2_error_status = raw
        .xoauth2_error_status
        .unwrap_or_else(|| "400".to_string());
    if !matches!(xoauth2_error_status.as_str(), "400" | "401" | "403") {
        return Err(ConfigError::new(
            key("xoauth2-error-status"),
            "must be \"400\", \"401\" or \"403\"",
        ));
    }
    let directories = raw.directory.into_vec();
    if directories.is_empty() {
        return Err(ConfigError::new(
            key("directory"),
            "needs at least one directory",
        ));
    }
    if let Some(d) = directories
        .iter()
        .enumerate()
        .find(|(i, d)| directories[..*i].contains(d))
    {
        return Err(ConfigError::new(
            key("directory"),
            format!("`{}` is listed twice", d.1),
        ));
    }
    let proxy_protocol = match (raw.proxy_protocol, raw.proxy_trusted_networks) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ConfigError::new(
                key("proxy-trusted-networks"),
                "is only used with `proxy-protocol = true`",
            ))
        }
        (true, None) => {
            return Err(ConfigError::new(
                key("proxy-trusted-networks"),
                "is required with `proxy-protocol = true` (the load balancers' addresses)",
            ))
        }
        (true, Some(nets)) => {
            let nets = nets
                .iter()
                .map(|n| n.parse::<Network>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(key("proxy-trusted-networks"), e))?;
            if nets.is_empty() {
                return Err(ConfigError::new(
                    key("proxy-trusted-networks"),
                    "needs at least one network",
                ));
            }
            Some(nets)
        }
    };
    Ok(Listener {
        name: name.to_string(),
        protocol,
        binds,
        tls,
        directories,
        upstream: raw.upstream,
        password_passthrough: raw.password_passthrough,
        password_tokens: raw.password_tokens,
        xoauth2_error_status,
        proxy_protocol,
    })
}

fn tls_mode(key: &str, value: Option<&str>) -> Result<TlsMode> {
    match value {
        None | Some("none") => Ok(TlsMode::None),
        Some("starttls") => Ok(TlsMode::StartTls),
        Some("implicit") => Ok(TlsMode::Implicit),
        Some(other) => Err(ConfigError::new(
            key,
            format!("`{other}` is not one of \"none\", \"starttls\", \"implicit\""),
        )),
    }
}

fn upstream(name: &str, raw: RawUpstream) -> Result<Upstream> {
    let key = |k: &str| format!("upstream.{name}.{k}");
    let host = raw
        .address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| {
            ConfigError::new(
                key("address"),
                format!("`{}` is not host:port", raw.address),
            )
        })?;
    let tls = tls_mode(&key("tls"), raw.tls.as_deref())?;
    let login = match raw.login {
        None => {
            return Err(ConfigError::new(
                key("login.method"),
                "is required (\"master-user\" or \"xclient\")",
            ))
        }
        Some(l) => match l.method.as_str() {
            "master-user" => {
                let username = l.username.filter(|u| !u.is_empty()).ok_or_else(|| {
                    ConfigError::new(key("login.username"), "is required for master-user")
                })?;
                let secret = l.secret.ok_or_else(|| {
                    ConfigError::new(key("login.secret"), "is required for master-user")
                })?;
                UpstreamLogin::MasterUser {
                    username,
                    secret: resolve_secret(&key("login.secret"), &secret)?,
                }
            }
            "xclient" => UpstreamLogin::Xclient,
            other => {
                return Err(ConfigError::new(
                    key("login.method"),
                    format!("`{other}` is not one of \"master-user\", \"xclient\""),
                ))
            }
        },
    };
    let identity = match raw.identity.as_deref() {
        None | Some("username") => IdentityField::Username,
        Some("email") => IdentityField::Email,
        Some(other) => {
            return Err(ConfigError::new(
                key("identity"),
                format!("`{other}` is not one of \"username\", \"email\""),
            ))
        }
    };
    let connect_timeout = match raw.connect_timeout {
        Some(v) => duration(&key("connect-timeout"), &v)?,
        None => Duration::from_secs(10),
    };
    let proxy_protocol_v2 = match raw.proxy_protocol.as_deref() {
        None | Some("none") => false,
        Some("v2") => true,
        Some(other) => {
            return Err(ConfigError::new(
                key("proxy-protocol"),
                format!("`{other}` is not one of \"none\", \"v2\""),
            ))
        }
    };
    let protocol = match raw.protocol.as_deref() {
        None => None,
        Some(p) => Some(protocol_named(&key("protocol"), p)?),
    };
    Ok(Upstream {
        name: name.to_string(),
        protocol,
        address: raw.address,
        tls,
        tls_ca: raw.tls_ca.map(PathBuf::from),
        tls_name: raw.tls_name.unwrap_or(host),
        login,
        identity,
        identity_case: hygiene::identity_case(&key("identity-case"), raw.identity_case.as_deref())?,
        connect_timeout,
        proxy_protocol_v2,
    })
}

fn directory(name: &str, mut raw: RawDirectory) -> Result<Directory> {
    let key = |k: &str| format!("directory.{name}.{k}");
    if raw.kind != "oidc" {
        return Err(ConfigError::new(
            key("type"),
            format!("`{}` is not supported; use \"oidc\"", raw.kind),
        ));
    }
    let timeout = match raw.timeout.take() {
        Some(v) => duration(&key("timeout"), &v)?,
        None => Duration::from_secs(15),
    };
    if let Some(issuer) = &raw.issuer {
        check_url(&key("issuer"), issuer)?;
    }
    let (url, method) = match raw.endpoint.take() {
        Some(e) => (e.url, e.method),
        None => (None, None),
    };
    if let Some(url) = &url {
        check_url(&key("endpoint.url"), url)?;
    }
    let method = method.unwrap_or_else(|| "userinfo".to_string());
    if url.is_none() && raw.issuer.is_none() && method != "jwt" {
        return Err(ConfigError::new(
            key("endpoint.url"),
            "is required (or set `issuer` to find it by discovery)",
        ));
    }
    let audience = raw.audience.take().filter(|a| !a.is_empty());
    let allow_any_audience = raw.allow_any_audience.unwrap_or(false);
    hygiene::check_policy(&hygiene::Policy {
        name,
        method: &method,
        audience: audience.as_deref(),
        required_scope: raw.required_scope.as_deref(),
        allow_any_audience,
    })?;
    let endpoint = endpoint(name, &method, url, &mut raw)?;
    let fields = Fields {
        email: raw.fields.email.or_else(|| Some("email".into())),
        username: raw
            .fields
            .username
            .or_else(|| Some("preferred_username".into())),
        full_name: raw.fields.full_name,
    };
    let clock_skew = match raw.clock_skew.take() {
        Some(v) => duration(&key("clock-skew"), &v)?,
        None => Duration::from_secs(60),
    };
    if clock_skew > Duration::from_secs(600) {
        return Err(ConfigError::new(key("clock-skew"), "must be at most 10m"));
    }
    Ok(Directory {
        name: name.to_string(),
        timeout,
        endpoint,
        fields,
        required_scope: raw.required_scope,
        issuer: raw.issuer,
        tls_ca: raw.tls_ca.map(PathBuf::from),
        audience,
        clock_skew,
        allow_any_audience,
        cache: cache_settings(name, raw.cache.unwrap_or_default())?,
    })
}

/// The endpoint of `method`, and the keys only `jwt` uses refused elsewhere.
fn endpoint(
    name: &str,
    method: &str,
    url: Option<String>,
    raw: &mut RawDirectory,
) -> Result<Endpoint> {
    let key = |k: &str| format!("directory.{name}.{k}");
    if method != "jwt" {
        for (k, set) in [
            ("algorithms", raw.algorithms.is_some()),
            ("secret", raw.secret.is_some()),
            ("jwks.url", raw.jwks.is_some()),
            ("jwt.allow-untyped", raw.jwt.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    key(k),
                    "is only used with endpoint.method = \"jwt\"",
                ));
            }
        }
    }
    Ok(match method {
        "userinfo" => Endpoint::UserInfo { url },
        "introspect" | "introspection" => Endpoint::Introspect {
            url,
            auth: introspect_auth(name, raw.auth.take())?,
        },
        "jwt" => {
            if url.is_some() {
                return Err(ConfigError::new(
                    key("endpoint.url"),
                    "is not used with \"jwt\" (keys come from `jwks.url` or the issuer's discovery)",
                ));
            }
            let mut settings = jwt_settings(
                name,
                raw.jwks.take(),
                raw.algorithms.take(),
                raw.secret.take(),
                raw.issuer.is_some(),
            )?;
            settings.allow_untyped = raw
                .jwt
                .take()
                .and_then(|j| j.allow_untyped)
                .unwrap_or(false);
            Endpoint::Jwt(settings)
        }
        other => {
            return Err(ConfigError::new(
                key("endpoint.method"),
                format!("`{other}` is not one of \"userinfo\", \"introspect\", \"jwt\""),
            ))
        }
    })
}

fn introspect_auth(name: &str, auth: Option<raw::RawAuth>) -> Result<IntrospectAuth> {
    let key = |k: &str| format!("directory.{name}.{k}");
    let Some(a) = auth else {
        return Ok(IntrospectAuth::None);
    };
    let required = |value: Option<String>, k: &str, method: &str| {
        value.ok_or_else(|| ConfigError::new(key(k), format!("is required for {method}")))
    };
    Ok(match a.method.as_deref() {
        None | Some("none") => IntrospectAuth::None,
        Some("basic") => IntrospectAuth::Basic {
            username: required(a.username, "auth.username", "basic")?,
            secret: resolve_secret(
                &key("auth.secret"),
                &required(a.secret, "auth.secret", "basic")?,
            )?,
        },
        Some("client-secret-post") => IntrospectAuth::ClientSecretPost {
            client_id: required(a.username, "auth.username", "client-secret-post")?,
            secret: resolve_secret(
                &key("auth.secret"),
                &required(a.secret, "auth.secret", "client-secret-post")?,
            )?,
        },
        Some("token") => IntrospectAuth::Token {
            token: resolve_secret(
                &key("auth.token"),
                &required(a.token, "auth.token", "token")?,
            )?,
        },
        Some("user-token") => IntrospectAuth::UserToken,
        Some(other) => {
            return Err(ConfigError::new(
                key("auth.method"),
                format!(
                    "`{other}` is not one of \"none\", \"basic\", \"client-secret-post\", \"token\", \"user-token\""
                ),
            ))
        }
    })
}

fn jwt_settings(
    name: &str,
    jwks: Option<raw::RawJwks>,
    algorithms: Option<Vec<String>>,
    secret: Option<String>,
    has_issuer: bool,
) -> Result<JwtSettings> {
    use jsonwebtoken::{Algorithm, AlgorithmFamily};
    let key = |k: &str| format!("directory.{name}.{k}");
    let secret = match secret {
        Some(s) => {
            let s = resolve_secret(&key("secret"), &s)?;
            if s.expose().len() < 32 {
                return Err(ConfigError::new(
                    key("secret"),
                    "must be at least 32 bytes (RFC 7518 §3.2)",
                ));
            }
            Some(s)
        }
        None => None,
    };
    let algorithms = match algorithms {
        Some(list) => {
            let mut algs = Vec::new();
            for a in &list {
                let alg: Algorithm = a.parse().map_err(|_| {
                    ConfigError::new(
                        key("algorithms"),
                        format!(
                            "`{a}` is not one of ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512, HS256, HS384, HS512, EdDSA"
                        ),
                    )
                })?;
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
            if algs.is_empty() {
                return Err(ConfigError::new(key("algorithms"), "must not be empty"));
            }
            algs
        }
        None => {
            let mut algs = ASYMMETRIC_ALGORITHMS.to_vec();
            if secret.is_some() {
                algs.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
            }
            algs
        }
    };
    let symmetric = algorithms
        .iter()
        .any(|a| a.family() == AlgorithmFamily::Hmac);
    let asymmetric = algorithms
        .iter()
        .any(|a| a.family() != AlgorithmFamily::Hmac);
    if symmetric && secret.is_none() {
        return Err(ConfigError::new(
            key("secret"),
            "is required for HS256/HS384/HS512",
        ));
    }
    if secret.is_some() && !symmetric {
        return Err(ConfigError::new(
            key("secret"),
            "is set, but `algorithms` lists no HS256/HS384/HS512",
        ));
    }
    let jwks_url = jwks.and_then(|j| j.url);
    if let Some(url) = &jwks_url {
        check_url(&key("jwks.url"), url)?;
    }
    if asymmetric && jwks_url.is_none() && !has_issuer {
        return Err(ConfigError::new(
            key("jwks.url"),
            "is required (or set `issuer` to find it by discovery)",
        ));
    }
    Ok(JwtSettings {
        jwks_url,
        algorithms,
        secret,
        allow_untyped: false,
    })
}

fn cache_settings(name: &str, raw: raw::RawCache) -> Result<CacheSettings> {
    let key = |k: &str| format!("directory.{name}.cache.{k}");
    let mut c = CacheSettings::default();
    if let Some(v) = raw.ttl {
        c.ttl = duration(&key("ttl"), &v)?;
    }
    if let Some(v) = raw.negative_ttl {
        c.negative_ttl = duration(&key("negative-ttl"), &v)?;
    }
    if let Some(v) = raw.stale_if_error {
        c.stale_if_error = duration(&key("stale-if-error"), &v)?;
    }
    if let Some(n) = raw.max_entries {
        if n == 0 {
            return Err(ConfigError::new(key("max-entries"), "must be at least 1"));
        }
        c.max_entries = n;
    }
    Ok(c)
}

fn check_url(key: &str, url: &str) -> Result<()> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{url}` is not an http(s) URL"),
        ))
    }
}

fn duration(key: &str, value: &str) -> Result<Duration> {
    units::parse_duration(value).map_err(|e| ConfigError::new(key, e))
}

/// Resolves a secret value: plain text, `%{env:NAME}%` or `%{file:PATH}%`
/// (file content with the trailing newline trimmed).
pub fn resolve_secret(key: &str, value: &str) -> Result<Secret> {
    let v = value.trim();
    if let Some(name) = v.strip_prefix("%{env:").and_then(|r| r.strip_suffix("}%")) {
        return std::env::var(name).map(Secret::new).map_err(|_| {
            ConfigError::new(key, format!("environment variable `{name}` is not set"))
        });
    }
    if let Some(path) = v.strip_prefix("%{file:").and_then(|r| r.strip_suffix("}%")) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(key, format!("cannot read secret file {path}: {e}")))?;
        return Ok(Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod ops_tests;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;
