//! Accepting HTTP connections: at most [`MAX_CONNECTIONS`] at once (more
//! wait in the kernel's backlog), the request head within
//! [`HEADER_TIMEOUT`], the whole exchange within [`REQUEST_TIMEOUT`], a
//! body of at most [`MAX_BODY`], one request per connection.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body (a logout token is a few KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// The request head's buffer (hyper's minimum is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("`server.http.bind`: cannot bind {addr}: {e}"))
}

/// Serves `router` on an already bound socket, forever.
pub async fn serve(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(MAX_HEAD);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
                Err(_) => tracing::debug!(client = %peer, "http: request timed out"),
                Ok(Err(e)) => tracing::debug!(client = %peer, "http: {e}"),
                Ok(Ok(())) => {}
            }
        });
    }
}
