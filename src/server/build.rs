//! A configuration → every listener's run-time [`Service`]: certificates,
//! TLS acceptors (one per protocol, each with its ALPN id), validators
//! (keeping the token cache of an unchanged directory on reload), upstreams.

use crate::backends::Group;
use crate::config::{Config, Protocol, TlsMode};
use crate::gateway::Service;
use crate::idp::{Directories, Validator};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds every listener's run-time service: loads certificates, builds
/// HTTP clients and TLS connectors. Used by `check` as well as `run`.
pub fn build(config: &Config) -> Result<Vec<Arc<Service>>, String> {
    build_after(config, &BTreeMap::new())
}

/// [`build`] on a reload: a directory configured exactly as in `previous`
/// (the running validators, by name) keeps its cached token results.
pub(super) fn build_after(
    config: &Config,
    previous: &BTreeMap<String, Arc<Validator>>,
) -> Result<Vec<Arc<Service>>, String> {
    // One acceptor per protocol: each offers its own ALPN name.
    let acceptor = |p: Protocol| match &config.server.tls {
        Some(t) => {
            crate::tls::acceptor_alpn(&t.cert, &t.key, crate::tls::alpn(p), t.session_tickets)
                .map(Some)
                .map_err(|e| format!("`server.tls`: {e}"))
        }
        None => Ok(None),
    };
    let acceptors = Protocol::ALL
        .iter()
        .map(|&p| Ok((p, acceptor(p)?)))
        .collect::<Result<Vec<_>, String>>()?;
    // One limiter for the process, kept across reloads (new limits apply).
    let limiter = crate::limits::Limiter::shared(&config.server.limits);
    let mut validators = BTreeMap::new();
    for (name, d) in &config.directories {
        let mut v = Validator::new(d.clone()).map_err(|e| format!("`directory.{name}`: {e}"))?;
        if let Some(old) = previous.get(name) {
            if v.keep_cache_of(old) {
                tracing::info!(directory = %name, entries = old.cache_entries(), "unchanged directory keeps its token cache");
            }
        }
        validators.insert(name.clone(), Arc::new(v));
    }
    let mut targets = BTreeMap::new();
    for (name, u) in &config.upstreams {
        let protocol = u.protocol.or_else(|| {
            let mut users = config.listeners.iter().filter(|l| l.upstream == *name);
            users.next().map(|l| l.protocol)
        });
        let t = Group::new(u.clone(), protocol)
            .map_err(|e| format!("`upstream.{name}.tls-ca`: {e}"))?;
        targets.insert(name.clone(), t);
    }
    config
        .listeners
        .iter()
        .map(|l| {
            // Names were cross-checked when the configuration was loaded.
            let directories = l
                .directories
                .iter()
                .map(|d| validators.get(d).cloned().ok_or("unknown directory"))
                .collect::<Result<Vec<_>, _>>()?;
            let upstream = targets
                .get(&l.upstream)
                .cloned()
                .ok_or("unknown upstream")?;
            Ok(Arc::new(Service {
                listener: l.clone(),
                hostname: config.server.hostname.clone(),
                limits: config.server.limits.clone(),
                directories: Directories::new(directories),
                upstream,
                tls: if l.tls == TlsMode::None {
                    None
                } else {
                    acceptors
                        .iter()
                        .find(|(p, _)| *p == l.protocol)
                        .and_then(|(_, a)| a.clone())
                },
                limiter: limiter.clone(),
                sessions: crate::sessions::Registry::shared(),
                apppass: if l.app_passwords {
                    crate::apppass::installed()
                } else {
                    None
                },
            }))
        })
        .collect()
}
