//! Serving the site: TLS with the proxy's certificate (ALPN `http/1.1`),
//! then HTTP/1.1 by hyper, bounded like the plain HTTP listener: at most
//! [`MAX_CONNECTIONS`] at once, the handshake and request head within
//! [`HEADER_TIMEOUT`], each connection within [`CONNECTION_TIMEOUT`] (a
//! sign-in's token exchange with the provider included).

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub const MAX_CONNECTIONS: usize = 256;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_HEAD: usize = 16 * 1024;

/// The site's acceptor: the proxy's certificate, offering `http/1.1`.
pub fn acceptor(tls: &crate::config::TlsFiles) -> Result<TlsAcceptor, String> {
    crate::tls::acceptor_alpn(&tls.cert, &tls.key, &[b"http/1.1"], tls.session_tickets)
        .map_err(|e| format!("`server.tls`: {e}"))
}

/// What a site's socket serves: the routes and the certificate. A reload
/// sends a new one; connections already open keep theirs.
#[derive(Clone)]
pub struct Current {
    pub router: Router,
    pub acceptor: TlsAcceptor,
}

/// Serves what `current` holds over TLS on an already bound socket, until
/// the task is aborted.
pub async fn serve(listener: TcpListener, current: watch::Receiver<Current>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("web: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Current { router, acceptor } = current.borrow().clone();
        let service = TowerToHyperService::new(router);
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(client = %peer, "web: TLS: {e}"),
                Err(_) => return tracing::debug!(client = %peer, "web: TLS handshake timed out"),
            };
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Err(_) => tracing::debug!(client = %peer, "web: connection timed out"),
                Ok(Err(e)) => tracing::debug!(client = %peer, "web: {e}"),
                Ok(Ok(())) => {}
            }
        });
    }
}
