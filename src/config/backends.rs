//! `[upstream.NAME]` with several backends: `backends = [...]`,
//! `routing.*`, `failover`, `health.*` (README, *Several instances, several
//! backends*). A single `address` is a group of one backend named after the
//! upstream, without health checks.

use super::values::duration;
use super::{ConfigError, IdentityCase, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: String,
    pub address: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub method: Option<String>,
    pub claim: Option<String>,
    pub map: Option<String>,
    pub fallback: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

/// The backends of one upstream and how a user is mapped to one of them.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Never empty; names are unique.
    pub list: Vec<Backend>,
    pub routing: Routing,
    /// A user the map does not list, or whose token lacks the claim.
    pub fallback: Fallback,
    /// The backends share the mail storage: a user whose backend is down
    /// may log in on another one (IMAP, POP3, ManageSieve; SMTP always may).
    pub failover: bool,
    /// Active checks; `None` for a single `address` without `health.*`.
    pub health: Option<Health>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    /// `host:port`, resolved at connect time.
    pub address: String,
    /// Relative share of the users under `hash` (1 ..= 10000).
    pub weight: u32,
    /// The name its certificate must carry: `tls-name`, else the host
    /// of `address`.
    pub tls_name: String,
}

#[derive(Debug, Clone)]
pub enum Routing {
    /// Weighted rendezvous hashing of the upstream user name.
    Hash,
    /// The token's claim of this name names the backend (name or address).
    Claim(String),
    /// `user backend` lines of a file, read at start and on reload.
    Map(Arc<UserMap>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Hash,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
}

/// A parsed map file: user → index into [`Backends::list`].
#[derive(Debug)]
pub struct UserMap {
    pub path: PathBuf,
    pub users: BTreeMap<String, usize>,
    /// Whether user names were folded to lower case (every identity case
    /// but `exact`), so lookups fold too.
    pub folded: bool,
}

impl UserMap {
    pub fn get(&self, user: &str) -> Option<usize> {
        if self.folded {
            self.users.get(&user.to_ascii_lowercase()).copied()
        } else {
            self.users.get(user).copied()
        }
    }
}

impl Backends {
    /// One backend at `address` (a single `address`), no health checks.
    pub fn single(name: &str, address: &str) -> Self {
        Backends {
            list: vec![Backend {
                name: name.to_string(),
                address: address.to_string(),
                weight: 1,
                tls_name: host_of("address", address).unwrap_or_default(),
            }],
            routing: Routing::Hash,
            fallback: Fallback::Hash,
            failover: false,
            health: None,
        }
    }

    /// The backend a name or an address names (a claim's value).
    pub fn find(&self, value: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|b| b.name == value)
            .or_else(|| self.list.iter().position(|b| b.address == value))
    }
}

/// The parts of a `RawUpstream` this file reads.
pub(super) struct RawGroup {
    pub address: Option<String>,
    pub backends: Option<Vec<RawBackend>>,
    pub routing: Option<RawRouting>,
    pub failover: Option<bool>,
    pub health: Option<RawHealth>,
}

pub(super) fn backends(upstream: &str, raw: RawGroup, case: IdentityCase) -> Result<Backends> {
    let key = |k: &str| format!("upstream.{upstream}.{k}");
    let list = match (raw.address, raw.backends) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key("backends"),
                "give either `address` or `backends`, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                key("address"),
                "is required (or `backends`, a list of { name, address, weight })",
            ))
        }
        (Some(address), None) => vec![Backend {
            tls_name: host_of(&key("address"), &address)?,
            name: upstream.to_string(),
            address,
            weight: 1,
        }],
        (None, Some(list)) => backend_list(&key("backends"), list)?,
    };
    let several = list.len() > 1;
    let health = health(&key, raw.health, several)?;
    let (routing, fallback) = routing(&key, raw.routing, &list, case)?;
    Ok(Backends {
        list,
        routing,
        fallback,
        failover: raw.failover.unwrap_or(false),
        health,
    })
}

fn backend_list(key: &str, raw: Vec<RawBackend>) -> Result<Vec<Backend>> {
    if raw.is_empty() {
        return Err(ConfigError::new(key, "names no backend"));
    }
    let mut list: Vec<Backend> = Vec::with_capacity(raw.len());
    for (i, b) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("{key}[{i}].{k}");
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if b.name.is_empty() || b.name.len() > 64 || !b.name.chars().all(valid) {
            return Err(ConfigError::new(
                at("name"),
                format!(
                    "`{}` is not a name (letters, digits, `.`, `-`, `_`)",
                    b.name
                ),
            ));
        }
        if list.iter().any(|o| o.name == b.name) {
            return Err(ConfigError::new(at("name"), format!("`{}` twice", b.name)));
        }
        if list.iter().any(|o| o.address == b.address) {
            return Err(ConfigError::new(
                at("address"),
                format!("`{}` twice", b.address),
            ));
        }
        let weight = match b.weight {
            None => 1,
            Some(w @ 1..=10000) => w as u32,
            Some(w) => {
                return Err(ConfigError::new(
                    at("weight"),
                    format!("{w} is not a weight from 1 to 10000"),
                ))
            }
        };
        list.push(Backend {
            tls_name: host_of(&at("address"), &b.address)?,
            name: b.name,
            address: b.address,
            weight,
        });
    }
    Ok(list)
}

fn health(
    key: &dyn Fn(&str) -> String,
    raw: Option<RawHealth>,
    several: bool,
) -> Result<Option<Health>> {
    let raw = match raw {
        None if !several => return Ok(None),
        None => RawHealth {
            interval: None,
            timeout: None,
        },
        Some(r) => r,
    };
    let interval = match raw.interval {
        Some(v) => duration(&key("health.interval"), &v)?,
        None => Duration::from_secs(5),
    };
    let timeout = match raw.timeout {
        Some(v) => duration(&key("health.timeout"), &v)?,
        None => Duration::from_secs(2),
    };
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::new(
            key("health.interval"),
            "must be at least 100ms",
        ));
    }
    if timeout.is_zero() || timeout > interval {
        return Err(ConfigError::new(
            key("health.timeout"),
            "must be more than zero and at most health.interval",
        ));
    }
    Ok(Some(Health { interval, timeout }))
}

fn routing(
    key: &dyn Fn(&str) -> String,
    raw: Option<RawRouting>,
    list: &[Backend],
    case: IdentityCase,
) -> Result<(Routing, Fallback)> {
    let Some(raw) = raw else {
        return Ok((Routing::Hash, Fallback::Hash));
    };
    let fallback = fallback(key, raw.fallback.as_deref())?;
    let method = raw.method.as_deref().unwrap_or("hash");
    let unused = |k: &str, v: &Option<String>| match v {
        Some(_) => Err(ConfigError::new(
            key(k),
            format!("is only read with a routing.method that uses it, not \"{method}\""),
        )),
        None => Ok(()),
    };
    let routing = match method {
        "hash" => {
            unused("routing.claim", &raw.claim)?;
            unused("routing.map", &raw.map)?;
            Routing::Hash
        }
        "claim" => {
            unused("routing.map", &raw.map)?;
            match raw.claim.filter(|c| !c.is_empty()) {
                Some(c) => Routing::Claim(c),
                None => return Err(ConfigError::new(
                    key("routing.claim"),
                    "is required with routing.method = \"claim\" (the claim naming the backend)",
                )),
            }
        }
        "map" => {
            unused("routing.claim", &raw.claim)?;
            let Some(path) = raw.map else {
                return Err(ConfigError::new(
                    key("routing.map"),
                    "is required with routing.method = \"map\" (a file of `user backend` lines)",
                ));
            };
            Routing::Map(Arc::new(super::backends_map::load(
                &key("routing.map"),
                &PathBuf::from(path),
                list,
                case != IdentityCase::Exact,
            )?))
        }
        other => {
            return Err(ConfigError::new(
                key("routing.method"),
                format!("`{other}` is not one of \"hash\", \"claim\", \"map\""),
            ))
        }
    };
    Ok((routing, fallback))
}

fn fallback(key: &dyn Fn(&str) -> String, value: Option<&str>) -> Result<Fallback> {
    match value {
        None | Some("hash") => Ok(Fallback::Hash),
        Some("refuse") => Ok(Fallback::Refuse),
        Some(other) => Err(ConfigError::new(
            key("routing.fallback"),
            format!("`{other}` is not one of \"hash\", \"refuse\""),
        )),
    }
}

/// Claim routing: every directory of every listener that uses the
/// upstream carries the claim into the identity; a listener that passes
/// passwords through has no token, hence no claim, so it needs the hash
/// fallback.
pub(super) fn cross_check(
    listeners: &[super::Listener],
    upstreams: &BTreeMap<String, super::Upstream>,
    directories: &mut BTreeMap<String, super::Directory>,
) -> Result<()> {
    for l in listeners {
        let Some(up) = upstreams.get(&l.upstream) else {
            continue;
        };
        let Routing::Claim(claim) = &up.backends.routing else {
            continue;
        };
        if l.password_passthrough && up.backends.fallback == Fallback::Refuse {
            return Err(ConfigError::new(
                format!("upstream.{}.routing.fallback", up.name),
                format!(
                    "listener `{}` passes passwords through, whose logins carry no claim                      `{claim}`: set routing.fallback = \"hash\" or password-passthrough = false",
                    l.name
                ),
            ));
        }
        for d in &l.directories {
            if let Some(d) = directories.get_mut(d) {
                if !d.fields.routing.contains(claim) {
                    d.fields.routing.push(claim.clone());
                }
            }
        }
    }
    Ok(())
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub(super) fn host_of(key: &str, address: &str) -> Result<String> {
    address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| ConfigError::new(key, format!("`{address}` is not host:port")))
}
