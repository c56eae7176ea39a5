//! Listeners: build every listener's [`Service`] from the configuration,
//! bind, accept (reading a PROXY protocol header where configured), run TLS
//! handshakes and hand each connection to its protocol front-end; one log
//! line per connection.
//!
//! Operations: SIGHUP re-reads the configuration and certificates (new
//! connections get the new [`Service`], established sessions keep theirs, a
//! broken configuration is refused and the old one keeps serving);
//! SIGTERM/SIGINT stop accepting and wait up to `server.shutdown-timeout`
//! for sessions to end; systemd is told READY/RELOADING/STOPPING/STATUS.
//!
//! - this file: the lifecycle (start, reload, stop);
//! - [`build`]: a configuration → the listeners' services;
//! - [`workers`]: the session threads;
//! - [`sessions`]: counting open sessions;
//! - [`connection`]: one connection from accept to its log line.

mod build;
mod connection;
mod sessions;
mod workers;

pub use build::build;

use crate::config::Config;
use crate::gateway::Service;
use crate::idp::Validator;
use build::build_after;
use sessions::{result_label, Sessions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use workers::Workers;

/// How often systemd's STATUS= is refreshed (when it changed).
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// Binds every listener, tells systemd it is ready, and serves until
/// SIGINT or SIGTERM; SIGHUP reloads `config_path`.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let signal_err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_err)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_err)?;

    let mut server = Server {
        config_path,
        shutdown_timeout: config.server.shutdown_timeout,
        http_bind: config.server.http,
        http: Arc::new(crate::http::Shared::default()),
        log_json: config.server.log_json,
        bound: BTreeMap::new(),
        sites: crate::web::sites::Sites::default(),
        sessions: Arc::new(Sessions::default()),
        workers: Workers::start(config.server.workers)?,
    };
    server.apply(&config).await?;
    if let Some(addr) = config.server.http {
        let socket = crate::http::bind(addr).await?;
        tracing::info!(address = %addr, "serving HTTP (metrics, health, back-channel logout)");
        let router = crate::http::router(server.http.clone());
        tokio::spawn(crate::http::serve(socket, router));
    }
    if let Some(path) = &config.server.control_socket {
        let socket = crate::control::server::bind(path).await?;
        tracing::info!(path = %path.display(), "serving the control socket (who, kick)");
        let registry = crate::sessions::Registry::shared();
        tokio::spawn(crate::control::server::serve(socket, registry));
    }
    let notifier = crate::notify::Notifier::from_env().map(Arc::new);
    if let Some(n) = &notifier {
        n.send(&format!("READY=1\nSTATUS={}", server.sessions.status()));
        tokio::spawn(keepalive(n.clone(), server.sessions.clone()));
    }
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if let Some(n) = &notifier {
                    n.send("RELOADING=1");
                }
                server.reload().await;
                if let Some(n) = &notifier {
                    n.send(&format!("READY=1\nSTATUS={}", server.sessions.status()));
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    if let Some(n) = &notifier {
        n.send("STOPPING=1");
    }
    server.stop_accepting().await;
    let open = server.sessions.open();
    tracing::info!(
        sessions = open,
        timeout_s = server.shutdown_timeout.as_secs(),
        "shutting down: no new connections; waiting for open sessions"
    );
    let drained = tokio::select! {
        d = server.sessions.drained(server.shutdown_timeout) => d,
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
    };
    if drained {
        tracing::info!("every session finished; stopped");
    } else {
        tracing::warn!(
            sessions = server.sessions.open(),
            "shutdown timeout: closing the remaining sessions"
        );
    }
    Ok(())
}

/// What the standing check does with a user the provider refused: every
/// session of the user ends (token logins included) and the store refuses
/// their app passwords, on every instance.
fn disabled_at_the_provider() -> crate::web::standing::Disabled {
    Arc::new(|user: &str| {
        let selector = crate::sessions::Selector::User(user.to_string());
        let ended =
            crate::sessions::Registry::shared().end(&selector, crate::sessions::Reason::Revoked);
        tracing::warn!(user = %user, sessions = ended, "disabled at the provider: sessions ended, app passwords refused");
        let Some(store) = crate::apppass::installed() else {
            return;
        };
        let user = user.to_string();
        tokio::spawn(async move {
            if let Err(e) = store.set_standing(&user, false).await {
                tracing::error!(user = %user, "cannot record the provider's verdict in the store: {e}");
            }
        });
    })
}

/// The running listeners, keyed by bound address, and the open sessions.
struct Server {
    config_path: PathBuf,
    shutdown_timeout: Duration,
    /// Settings that only take effect at start (a reload warns about them).
    http_bind: Option<SocketAddr>,
    /// What the HTTP listener's handlers see (the running directories).
    http: Arc<crate::http::Shared>,
    log_json: bool,
    bound: BTreeMap<SocketAddr, Bound>,
    /// The `https` listeners (the app-password site).
    sites: crate::web::sites::Sites,
    sessions: Arc<Sessions>,
    workers: Workers,
}

/// One bound socket: its accept loops (one per worker) and the service new
/// connections get.
struct Bound {
    service: watch::Sender<Arc<Service>>,
    accept: Vec<JoinHandle<()>>,
}

impl Server {
    /// Makes the listeners match `config`: builds the sites and binds new
    /// addresses first (all or nothing), then swaps the service of
    /// addresses that stay, starts the new ones and closes those no longer
    /// configured. Established sessions keep the service they started with.
    async fn apply(&mut self, config: &Config) -> Result<(), String> {
        crate::apppass::ensure(config).await?;
        let sites = self
            .sites
            .prepare(
                config,
                crate::apppass::installed(),
                &disabled_at_the_provider(),
            )
            .await?;
        let services = build_after(config, &self.validators())?;
        let mut wanted: BTreeMap<SocketAddr, Arc<Service>> = BTreeMap::new();
        for svc in &services {
            for addr in &svc.listener.binds {
                if let Some(other) = wanted.insert(*addr, svc.clone()) {
                    return Err(format!(
                        "listeners `{}` and `{}` both bind {addr}",
                        other.listener.name, svc.listener.name
                    ));
                }
            }
        }
        let mut fresh = Vec::new();
        for (addr, svc) in &wanted {
            if !self.bound.contains_key(addr) {
                let socket = crate::limits::bind(*addr).await.map_err(|e| {
                    format!("listener `{}`: cannot bind {addr}: {e}", svc.listener.name)
                })?;
                fresh.push((*addr, socket));
            }
        }
        let gone: Vec<SocketAddr> = self
            .bound
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(b) = self.bound.remove(&addr) {
                b.close().await;
                tracing::info!(address = %addr, "stopped listening");
            }
        }
        // JWKS fetched now and kept fresh (the old services' background
        // work ends when they are dropped); ManageSieve upstreams'
        // capabilities learned now, before a first greeting needs them.
        for svc in &services {
            svc.directories.start();
            if svc.listener.protocol == crate::config::Protocol::ManageSieve {
                crate::upstream::managesieve::known_capabilities(svc.upstream.any());
            }
        }
        for (addr, socket) in fresh {
            let svc = wanted[&addr].clone();
            tracing::info!(listener = %svc.listener.name, address = %addr, "listening");
            let (tx, rx) = watch::channel(svc);
            let accept = self
                .workers
                .accept(socket, rx, &self.sessions)
                .map_err(|e| format!("cannot accept on {addr}: {e}"))?;
            self.bound.insert(
                addr,
                Bound {
                    service: tx,
                    accept,
                },
            );
        }
        for (addr, svc) in wanted {
            if let Some(b) = self.bound.get(&addr) {
                b.service.send_replace(svc);
            }
        }
        self.sites.commit(sites);
        self.http.set_directories(self.validators());
        Ok(())
    }

    /// SIGHUP: re-reads the configuration and certificates. A configuration
    /// that does not load, build or bind is refused and the old one stays.
    async fn reload(&mut self) {
        let path = self.config_path.clone();
        let result = match Config::load(&path) {
            Ok(config) => match self.apply(&config).await {
                Ok(()) => Ok(config),
                Err(e) => Err(e),
            },
            Err(e) => Err(e.to_string()),
        };
        let metrics = crate::metrics::global();
        match result {
            Ok(config) => {
                self.shutdown_timeout = config.server.shutdown_timeout;
                if config.server.http != self.http_bind
                    || config.server.log_json != self.log_json
                    || config.server.workers != self.workers.handles.len()
                {
                    tracing::warn!(
                        "`server.http`, `server.log-format` and `server.workers` changes take effect at the next restart"
                    );
                }
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                metrics.reloads.get_or_create(&result_label("ok")).inc();
                tracing::info!(config = %path.display(), listeners = self.bound.len(), "configuration reloaded");
            }
            Err(e) => {
                metrics
                    .reloads
                    .get_or_create(&result_label("refused"))
                    .inc();
                tracing::error!(config = %path.display(), "reload refused, the running configuration stays: {e}");
            }
        }
    }

    /// The running directories' validators, by name.
    fn validators(&self) -> BTreeMap<String, Arc<Validator>> {
        let mut all = BTreeMap::new();
        for b in self.bound.values() {
            for v in b.service.borrow().directories.iter() {
                all.entry(v.name().to_string()).or_insert_with(|| v.clone());
            }
        }
        all
    }

    async fn stop_accepting(&mut self) {
        for (_, b) in std::mem::take(&mut self.bound) {
            b.close().await;
        }
    }
}

impl Bound {
    /// Stops the accept loop and waits until its socket is closed (the
    /// aborted task is dropped at once: it only awaits `accept`).
    async fn close(self) {
        for accept in &self.accept {
            accept.abort();
        }
        for accept in self.accept {
            let _ = accept.await;
        }
    }
}

/// Tells systemd how many sessions are open (and pings its watchdog).
async fn keepalive(notifier: Arc<crate::notify::Notifier>, sessions: Arc<Sessions>) {
    let watchdog = crate::notify::watchdog_interval();
    let period = watchdog.unwrap_or(STATUS_PERIOD).min(STATUS_PERIOD);
    let mut last = String::new();
    loop {
        tokio::time::sleep(period).await;
        let status = sessions.status();
        let mut message = String::new();
        if watchdog.is_some() {
            message.push_str("WATCHDOG=1\n");
        }
        if status != last {
            message.push_str(&format!("STATUS={status}\n"));
            last = status;
        }
        if !message.is_empty() {
            notifier.send(&message);
        }
    }
}
