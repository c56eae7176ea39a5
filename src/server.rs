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

use crate::client::Client;
use crate::config::{Config, Protocol, TlsMode};
use crate::gateway::{Outcome, Service};
use crate::idp::{Directories, Validator};
use crate::stream::MaybeTls;
use crate::upstream::Target;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often systemd's STATUS= is refreshed (when it changed).
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// Builds every listener's run-time service: loads certificates, builds
/// HTTP clients and TLS connectors. Used by `check` as well as `run`.
pub fn build(config: &Config) -> Result<Vec<Arc<Service>>, String> {
    build_after(config, &BTreeMap::new())
}

/// [`build`] on a reload: a directory configured exactly as in `previous`
/// (the running validators, by name) keeps its cached token results.
fn build_after(
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
        let t = Target::new(u.clone()).map_err(|e| format!("`upstream.{name}.tls-ca`: {e}"))?;
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
            }))
        })
        .collect()
}

/// The threads that run sessions: one single-threaded event loop each, as
/// nginx's worker processes. Every worker accepts on its own registration
/// of each listening socket, so a session stays on the thread that
/// accepted it, with no hand-over and no work stealing between threads
/// (measured in docs/benchmarks.md). The main runtime keeps signals,
/// reloads, metrics and the directories' background refreshes.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
}

impl Workers {
    fn start(n: usize) -> Result<Workers, String> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start session worker {i}: {e}"))?;
            handles.push(runtime.handle().clone());
            // Runs its tasks until the process ends.
            std::thread::Builder::new()
                .name(format!("session-{i}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("cannot start session worker {i}: {e}"))?;
        }
        Ok(Workers { handles })
    }

    /// One accept loop per worker on `socket`, each with its own
    /// registration of the same listening socket.
    fn accept(
        &self,
        socket: TcpListener,
        service: watch::Receiver<Arc<Service>>,
        sessions: &Arc<Sessions>,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let socket = socket.into_std()?;
        // Every descriptor first: a failure leaves no loop running.
        let own = (0..self.handles.len())
            .map(|_| socket.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(self
            .handles
            .iter()
            .zip(own)
            .map(|(handle, own)| {
                let (service, sessions) = (service.clone(), sessions.clone());
                handle.spawn(async move {
                    match TcpListener::from_std(own) {
                        Ok(listener) => accept_loop(service, listener, sessions).await,
                        Err(e) => tracing::error!("cannot register a listening socket: {e}"),
                    }
                })
            })
            .collect())
    }
}

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
        metrics_bind: config.server.metrics,
        log_json: config.server.log_json,
        bound: BTreeMap::new(),
        sessions: Arc::new(Sessions::default()),
        workers: Workers::start(config.server.workers)?,
    };
    server.apply(&config).await?;
    if let Some(addr) = config.server.metrics {
        let socket = crate::metrics::bind(addr).await?;
        tracing::info!(address = %addr, "serving metrics");
        tokio::spawn(crate::metrics::serve(socket));
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

/// The running listeners, keyed by bound address, and the open sessions.
struct Server {
    config_path: PathBuf,
    shutdown_timeout: Duration,
    /// Settings that only take effect at start (a reload warns about them).
    metrics_bind: Option<SocketAddr>,
    log_json: bool,
    bound: BTreeMap<SocketAddr, Bound>,
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
    /// Makes the listeners match `config`: binds new addresses first (all
    /// or nothing), then swaps the service of addresses that stay, starts
    /// the new ones and closes those no longer configured. Established
    /// sessions keep the service they started with.
    async fn apply(&mut self, config: &Config) -> Result<(), String> {
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
        // work ends when they are dropped).
        for svc in &services {
            svc.directories.start();
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
                if config.server.metrics != self.metrics_bind
                    || config.server.log_json != self.log_json
                    || config.server.workers != self.workers.handles.len()
                {
                    tracing::warn!(
                        "`server.metrics`, `server.log-format` and `server.workers` changes take effect at the next restart"
                    );
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

fn result_label(result: &str) -> crate::metrics::ResultLabels {
    crate::metrics::ResultLabels {
        result: result.to_string(),
    }
}

/// Counts open sessions, for graceful stop and systemd's STATUS=.
#[derive(Default)]
struct Sessions {
    open: AtomicUsize,
    total: AtomicU64,
}

impl Sessions {
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn status(&self) -> String {
        format!(
            "{} sessions open, {} since start",
            self.open(),
            self.total.load(Ordering::Relaxed)
        )
    }

    /// Waits (at most `timeout`) until no session is open.
    async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.open() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// Held by each connection's task: keeps the counters right however the
/// task ends (including being dropped at shutdown).
struct SessionGuard {
    sessions: Arc<Sessions>,
    listener: String,
}

impl SessionGuard {
    fn new(sessions: Arc<Sessions>, listener: &str) -> Self {
        sessions.open.fetch_add(1, Ordering::Relaxed);
        sessions.total.fetch_add(1, Ordering::Relaxed);
        let m = crate::metrics::global();
        let labels = crate::metrics::ListenerLabels {
            listener: listener.to_string(),
        };
        m.connections.get_or_create(&labels).inc();
        m.connections_open.get_or_create(&labels).inc();
        Self {
            sessions,
            listener: listener.to_string(),
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.open.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::global()
            .connections_open
            .get_or_create(&crate::metrics::ListenerLabels {
                listener: std::mem::take(&mut self.listener),
            })
            .dec();
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

async fn accept_loop(
    service: watch::Receiver<Arc<Service>>,
    socket: TcpListener,
    sessions: Arc<Sessions>,
) {
    loop {
        match socket.accept().await {
            Ok((tcp, peer)) => {
                let svc = service.borrow().clone();
                let guard = SessionGuard::new(sessions.clone(), &svc.listener.name);
                tokio::spawn(async move {
                    handle(svc, tcp, peer).await;
                    drop(guard);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                let name = service.borrow().listener.name.clone();
                tracing::warn!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The client's addresses: the connection's own, or those a trusted load
/// balancer's PROXY header names. `None`: the connection is to be closed.
async fn client_addresses(
    svc: &Service,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, SocketAddr)> {
    let Some(trusted) = &svc.listener.proxy_protocol else {
        return Some((peer, local));
    };
    let name = &svc.listener.name;
    if !trusted.iter().any(|n| n.contains(peer.ip())) {
        tracing::warn!(listener = %name, client = %peer, "PROXY protocol listener: connection from an untrusted address refused");
        return None;
    }
    let timeout = svc.limits.pre_auth_timeout.min(PROXY_HEADER_TIMEOUT);
    match tokio::time::timeout(timeout, crate::proxy_protocol::read_header(tcp)).await {
        Ok(Ok(header)) => Some(header.addresses.unwrap_or((peer, local))),
        Ok(Err(e)) => {
            tracing::warn!(listener = %name, balancer = %peer, "{e}");
            None
        }
        Err(_) => {
            tracing::info!(listener = %name, balancer = %peer, "PROXY protocol header timed out");
            None
        }
    }
}

async fn handle(svc: Arc<Service>, mut tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let Some((peer, local)) = client_addresses(&svc, &mut tcp, peer, local).await else {
        return;
    };
    // Counted by the client's address (from the PROXY header, if any).
    let _admitted = match svc.limiter.admit(peer.ip()) {
        Ok(a) => a,
        Err(refusal) => return crate::limits::refuse(&svc, tcp, peer, refusal).await,
    };
    let deadline = started + svc.limits.pre_auth_timeout;
    let mut greeted = false;
    let stream = match (&svc.tls, svc.listener.tls) {
        (Some(acceptor), TlsMode::Implicit) => {
            let until = deadline.min(started + TLS_HANDSHAKE_TIMEOUT);
            // The server speaks first in both protocols: its greeting goes
            // out with the server's Finished (TLS 1.3 half-RTT data, see
            // `tls::acceptor_alpn`), not one round trip and one write later.
            let greeting = (crate::frontend::of(svc.listener.protocol).greeting)(&svc, true);
            let accept = acceptor.accept_with(tcp, |conn| {
                use std::io::Write;
                // Buffered by rustls until the handshake keys exist.
                greeted = conn.writer().write_all(greeting.as_bytes()).is_ok();
            });
            match tokio::time::timeout_at(until, accept).await {
                Ok(Ok(tls)) => MaybeTls::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::info!(listener = %svc.listener.name, client = %peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(listener = %svc.listener.name, client = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        _ => MaybeTls::Plain(tcp),
    };
    let mut client = Client::new(stream, peer, local, svc.limits.max_line, deadline);
    client.greeted = greeted;
    let outcome = (crate::frontend::of(svc.listener.protocol).serve)(client, &svc).await;
    log_outcome(&svc, peer, started, &outcome);
}

fn log_outcome(svc: &Service, peer: SocketAddr, started: Instant, o: &Outcome) {
    let (up, down) = o
        .relayed
        .map(|b| (b.to_upstream, b.to_client))
        .unwrap_or((0, 0));
    crate::metrics::global().relayed(&svc.listener.name, up, down);
    tracing::info!(
        listener = %svc.listener.name,
        client = %peer,
        mechanism = o.mechanism.unwrap_or("-"),
        user = o.user.as_deref().unwrap_or("-"),
        result = o.result,
        failure = o.last_failure.as_deref().unwrap_or("-"),
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_in = up,
        bytes_out = down,
        "connection closed"
    );
}
