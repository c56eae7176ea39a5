//! Listeners: build every listener's [`Service`] from the configuration,
//! bind, accept, run TLS handshakes and hand each connection to its
//! protocol front-end; one log line per connection.

use crate::client::Client;
use crate::config::{Config, Protocol, TlsMode};
use crate::gateway::{Outcome, Service};
use crate::idp::{Directories, Validator};
use crate::stream::MaybeTls;
use crate::upstream::Target;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds every listener's run-time service: loads certificates, builds
/// HTTP clients and TLS connectors. Used by `check` as well as `run`.
pub fn build(config: &Config) -> Result<Vec<Arc<Service>>, String> {
    let acceptor = match &config.server.tls {
        Some(t) => {
            Some(crate::tls::acceptor(&t.cert, &t.key).map_err(|e| format!("`server.tls`: {e}"))?)
        }
        None => None,
    };
    let mut validators = BTreeMap::new();
    for (name, d) in &config.directories {
        let v = Validator::new(d.clone()).map_err(|e| format!("`directory.{name}`: {e}"))?;
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
                    acceptor.clone()
                },
            }))
        })
        .collect()
}

/// Binds every listener and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), String> {
    let services = build(&config)?;
    for svc in &services {
        // JWKS fetched at start-up and kept fresh.
        svc.directories.start();
    }
    let mut sockets = Vec::new();
    for svc in &services {
        for addr in &svc.listener.binds {
            let socket = TcpListener::bind(addr).await.map_err(|e| {
                format!("listener `{}`: cannot bind {addr}: {e}", svc.listener.name)
            })?;
            tracing::info!(listener = %svc.listener.name, address = %addr, "listening");
            sockets.push((svc.clone(), socket));
        }
    }
    for (svc, socket) in sockets {
        tokio::spawn(accept_loop(svc, socket));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn accept_loop(svc: Arc<Service>, socket: TcpListener) {
    loop {
        match socket.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(handle(svc.clone(), tcp, peer));
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(listener = %svc.listener.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(svc: Arc<Service>, tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let stream = match (&svc.tls, svc.listener.tls) {
        (Some(acceptor), TlsMode::Implicit) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
    let deadline = started + svc.limits.pre_auth_timeout;
    let client = Client::new(stream, peer, local, svc.limits.max_line, deadline);
    let outcome = match svc.listener.protocol {
        Protocol::Imap => crate::imap::serve(client, &svc).await,
        Protocol::Smtp => crate::smtp::serve(client, &svc).await,
    };
    log_outcome(&svc, peer, started, &outcome);
}

fn log_outcome(svc: &Service, peer: SocketAddr, started: Instant, o: &Outcome) {
    let (up, down) = o
        .relayed
        .map(|b| (b.to_upstream, b.to_client))
        .unwrap_or((0, 0));
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
