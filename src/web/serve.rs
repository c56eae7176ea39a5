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
use tokio::sync::Semaphore;
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

/// Serves `router` over TLS on an already bound socket, forever.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, router: Router) {
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
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
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

/// Starts every `https` listener of `config` with `store`, and one
/// standing check per directory users sign in with. The sites keep this
/// configuration until a restart.
pub async fn start(
    config: &crate::config::Config,
    store: Arc<dyn crate::apppass::Store>,
    disabled: super::standing::Disabled,
) -> Result<(), String> {
    let tls = config
        .server
        .tls
        .as_ref()
        .ok_or("`server.tls` is required")?;
    let acceptor = acceptor(tls)?;
    let mut checked = std::collections::BTreeSet::new();
    for listener in &config.web {
        let site = Arc::new(super::Site::new(config, listener, store.clone())?);
        if checked.insert(listener.directory.clone()) {
            tokio::spawn(super::standing::run(super::standing::Check {
                provider: site.provider.clone(),
                store: store.clone(),
                directory: site.directory.clone(),
                settings: site.app_passwords.clone(),
                disabled: disabled.clone(),
            }));
        }
        for addr in &listener.binds {
            let socket = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("listener `{}`: cannot bind {addr}: {e}", listener.name))?;
            tracing::info!(listener = %listener.name, address = %addr, "serving the app-password site");
            tokio::spawn(serve(socket, acceptor.clone(), super::router(site.clone())));
        }
    }
    Ok(())
}
