//! Serving the site: TLS with the proxy's certificate (ALPN `http/1.1`),
//! then HTTP/1.1 by hyper, bounded like the plain HTTP listener: at most
//! [`MAX_CONNECTIONS`] at once, the handshake and request head within
//! [`HEADER_TIMEOUT`], each connection within [`CONNECTION_TIMEOUT`] (a
//! sign-in's token exchange with the provider included).

use crate::http::{accept, connection, Limits};
use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub const MAX_CONNECTIONS: usize = 256;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

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

/// The site's connections: [`MAX_CONNECTIONS`], keep-alive, a sign-in's
/// token exchange within [`CONNECTION_TIMEOUT`].
const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    header: HEADER_TIMEOUT,
    whole: CONNECTION_TIMEOUT,
    keep_alive: true,
};

/// Serves what `current` holds over TLS on an already bound socket, until
/// the task is aborted.
pub async fn serve(listener: TcpListener, current: watch::Receiver<Current>) {
    accept(listener, &LIMITS, |tcp, peer| {
        let Current { router, acceptor } = current.borrow().clone();
        async move {
            let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(client = %peer, "web: TLS: {e}"),
                Err(_) => return tracing::debug!(client = %peer, "web: TLS handshake timed out"),
            };
            connection(tls, router, &LIMITS, peer).await;
        }
    })
    .await;
}
