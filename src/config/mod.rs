//! Typed, validated configuration.
//!
//! `raw` mirrors the TOML file; [`Config::from_raw`] checks every value,
//! resolves `%{env:NAME}%` / `%{file:PATH}%` secrets and cross-checks the
//! names listeners refer to. A `Config` that exists is usable: the rest of the
//! program never re-validates it. Errors name the offending key.
//!
//! One file per section: [`server`], [`listener`], [`upstream`],
//! [`directory`] (with its [`jwt`] and [`cache`] keys), [`values`]
//! (durations, URLs, secrets), [`hygiene`] (which tokens a directory
//! accepts, identity case); [`raw`] mirrors the file.

mod backends;
mod backends_map;
mod cache;
mod directory;
pub mod hygiene;
#[cfg(test)]
mod hygiene_tests;
mod jwt;
mod listener;
pub mod raw;
mod server;
mod session;
#[cfg(test)]
mod session_tests;
mod store;
pub mod units;
mod upstream;
mod values;
mod web;

pub use backends::{Backend, Backends, Fallback, Health, Routing, UserMap};
pub use cache::CacheSettings;
use directory::check_url;
pub use directory::{Directory, Endpoint, Fields, IntrospectAuth};
pub use jwt::{JwtSettings, ASYMMETRIC_ALGORITHMS};
pub use listener::{Listener, Protocol, TlsMode};
pub use server::{Limits, Server, TlsFiles, DEFAULT_SESSION_TICKETS};
pub use session::{AtExpiry, BackchannelLogout, SessionPolicy};
pub use store::{StoreSettings, StoreUrl, DEFAULT_STORE_URL};
pub use upstream::{IdentityField, Upstream, UpstreamLogin};
use values::duration;
pub use values::resolve_secret;
pub use web::{AppPasswordSettings, OidcClient, WebListener, MIN_COOKIE_KEY};

pub use crate::proxy_protocol::Network;
use crate::secret::Secret;
pub use hygiene::IdentityCase;
use raw::RawConfig;
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
    /// The `https` listeners (the self-service site).
    pub web: Vec<WebListener>,
    /// `[store]`: where app passwords are kept.
    pub store: StoreSettings,
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
        let server = server::server(raw.server)?;
        let store = store::store(raw.store)?;
        let mut directories = raw
            .directory
            .into_iter()
            .map(|(name, d)| Ok((name.clone(), directory::directory(&name, d)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let upstreams = raw
            .upstream
            .into_iter()
            .map(|(name, u)| Ok((name.clone(), upstream::upstream(&name, u)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let (https, mail): (Vec<_>, Vec<_>) = raw
            .listener
            .into_iter()
            .partition(|(_, l)| l.protocol == "https");
        let web = https
            .into_iter()
            .map(|(name, l)| web::web_listener(&name, l))
            .collect::<Result<Vec<_>>>()?;
        web::check(&web, &server, &directories)?;
        let listeners = mail
            .into_iter()
            .map(|(name, l)| listener::listener(&name, l))
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
        backends::cross_check(&listeners, &upstreams, &mut directories)?;
        Ok(Config {
            server,
            listeners,
            upstreams,
            directories,
            web,
            store,
        })
    }

    /// Whether any listener takes app passwords (then the store is opened).
    pub fn uses_app_passwords(&self) -> bool {
        self.listeners.iter().any(|l| l.app_passwords) || !self.web.is_empty()
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
            .chain(self.store_key_warning())
            .collect()
    }

    /// The site keeps refresh tokens sealed with a key derived from
    /// `store.hash-key`; without it the key is generated and kept in the
    /// store itself, beside what it seals.
    fn store_key_warning(&self) -> Option<String> {
        (!self.web.is_empty() && self.store.hash_key.is_none()).then(|| {
            "`store.hash-key` is not set: the key that seals the site's refresh tokens (and keys \
             the app-password hashes) is generated and kept in the store itself, so a copy of \
             the database opens them; set it from a file the database's backups do not hold"
                .to_string()
        })
    }
}

/// A TOML syntax or type error, by line and column: never with the text of
/// the line, which may hold a secret (`login.secret = "..."`), nor with a
/// value the error quotes ([`without_values`]).
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
            without_values(e.message().trim_end())
        ),
    )
}

/// serde's messages quote the value they refused (`invalid type: string
/// "hunter2", expected struct RawLogin`, `unknown variant `x``): keep the
/// kind of value and what was expected, drop the value itself.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The last ", expected": a quoted value may contain the words too.
        let (unexpected, expected) = match rest.rfind(", expected ") {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let kind = match unexpected.find(['`', '"']) {
            Some(i) => format!("{}(not shown)", &unexpected[..i]),
            None => unexpected.to_string(),
        };
        return format!("{prefix}{kind}{expected}");
    }
    message.to_string()
}

#[cfg(test)]
mod backends_tests;
#[cfg(test)]
mod ops_tests;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod secret_tests;
#[cfg(test)]
mod tests;
