//! One connection: admission (limits), the PROXY header of a trusted load
//! balancer, the TLS handshake (the greeting in its first flight), the
//! front-end, and the connection's log line.

use super::sessions::{SessionGuard, Sessions};
use crate::client::Client;
use crate::config::TlsMode;
use crate::gateway::{Outcome, Service};
use crate::stream::MaybeTls;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn accept_loop(
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
                if let Some(greeting) = greeting {
                    greeted = conn.writer().write_all(greeting.as_bytes()).is_ok();
                }
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
        backend = o.backend.as_ref().map_or("-", |b| b.name.as_str()),
        "connection closed"
    );
}
