//! The running sites (`https` listeners): bound at start, and on a reload
//! (SIGHUP) made to match the new configuration like the mail listeners:
//! new addresses bound, addresses that stay get the new routes and
//! certificate (connections already open keep theirs), addresses no longer
//! configured closed. Browsers stay signed in across a reload while their
//! listener keeps its name, directory and cookie key. One standing check
//! runs per directory users sign in with, restarted with its settings.
//!
//! A reload is prepared (every site built, every new address bound) before
//! anything changes, so a reload that fails leaves the running sites alone.

use super::serve::{acceptor, serve, Current};
use super::standing::{run, Check, Disabled};
use super::Site;
use crate::apppass::Store;
use crate::config::{Config, WebListener};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

#[derive(Default)]
pub struct Sites {
    bound: BTreeMap<SocketAddr, Bound>,
    /// By listener name: its configuration and its site.
    running: BTreeMap<String, (WebListener, Arc<Site>)>,
    checks: Vec<AbortHandle>,
}

struct Bound {
    current: watch::Sender<Current>,
    task: AbortHandle,
}

/// A configuration's sites, built and bound, not yet serving.
pub struct Prepared {
    running: BTreeMap<String, (WebListener, Arc<Site>)>,
    wanted: BTreeMap<SocketAddr, Current>,
    fresh: Vec<(SocketAddr, TcpListener)>,
    checks: Vec<Check>,
}

impl Drop for Sites {
    fn drop(&mut self) {
        self.bound.values().for_each(|b| b.task.abort());
        self.checks.iter().for_each(AbortHandle::abort);
    }
}

fn same_key(a: &WebListener, b: &WebListener) -> bool {
    let key = |l: &WebListener| l.cookie_key.as_ref().map(|k| k.expose().to_string());
    key(a) == key(b)
}

impl Sites {
    /// Builds the sites of `config` over `store` and binds the addresses
    /// not bound yet; nothing running changes.
    pub async fn prepare(
        &self,
        config: &Config,
        store: Option<Arc<dyn Store>>,
        disabled: &Disabled,
    ) -> Result<Prepared, String> {
        let mut prepared = Prepared {
            running: BTreeMap::new(),
            wanted: BTreeMap::new(),
            fresh: Vec::new(),
            checks: Vec::new(),
        };
        if config.web.is_empty() {
            return Ok(prepared);
        }
        let store = store.ok_or("the app-password store is not open")?;
        let tls = config
            .server
            .tls
            .as_ref()
            .ok_or("`server.tls` is required")?;
        let acceptor = acceptor(tls)?;
        for listener in &config.web {
            let mut site = Site::new(config, listener, store.clone())?;
            if let Some((old_listener, old)) = self.running.get(&listener.name) {
                site.carry_over(old, same_key(old_listener, listener));
            }
            let site = Arc::new(site);
            if !prepared
                .checks
                .iter()
                .any(|c| c.directory == site.directory)
            {
                prepared.checks.push(Check {
                    provider: site.provider.clone(),
                    store: store.clone(),
                    directory: site.directory.clone(),
                    settings: site.app_passwords.clone(),
                    disabled: disabled.clone(),
                });
            }
            let current = Current {
                router: super::router(site.clone()),
                acceptor: acceptor.clone(),
            };
            for addr in &listener.binds {
                if prepared.wanted.insert(*addr, current.clone()).is_some() {
                    return Err(format!("two `https` listeners bind {addr}"));
                }
                if !self.bound.contains_key(addr) {
                    let socket = TcpListener::bind(addr).await.map_err(|e| {
                        format!("listener `{}`: cannot bind {addr}: {e}", listener.name)
                    })?;
                    prepared.fresh.push((*addr, socket));
                }
            }
            prepared
                .running
                .insert(listener.name.clone(), (listener.clone(), site));
        }
        Ok(prepared)
    }

    /// Serves what `prepared` holds: closes the addresses no longer
    /// wanted, swaps the others, starts the new ones and the checks.
    pub fn commit(&mut self, prepared: Prepared) {
        let Prepared {
            running,
            mut wanted,
            fresh,
            checks,
        } = prepared;
        self.bound.retain(|addr, b| {
            let keep = wanted.contains_key(addr);
            if !keep {
                b.task.abort();
                tracing::info!(address = %addr, "the app-password site stopped listening");
            }
            keep
        });
        for (addr, b) in &self.bound {
            if let Some(current) = wanted.remove(addr) {
                b.current.send_replace(current);
            }
        }
        for (addr, socket) in fresh {
            let Some(current) = wanted.remove(&addr) else {
                continue;
            };
            tracing::info!(address = %addr, "serving the app-password site");
            let (tx, rx) = watch::channel(current);
            let task = tokio::spawn(serve(socket, rx)).abort_handle();
            self.bound.insert(addr, Bound { current: tx, task });
        }
        self.checks.drain(..).for_each(|c| c.abort());
        for check in checks {
            self.checks.push(tokio::spawn(run(check)).abort_handle());
        }
        self.running = running;
    }
}
