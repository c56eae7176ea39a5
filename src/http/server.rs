//! Accepting HTTP connections: at most [`MAX_CONNECTIONS`] at once (more
//! wait in the kernel's backlog), the request head within
//! [`HEADER_TIMEOUT`], the whole exchange within [`REQUEST_TIMEOUT`], a
//! body of at most [`MAX_BODY`], one request per connection.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
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

/// How a listener bounds its HTTP connections.
pub struct Limits {
    /// Connections at once (more wait in the kernel's backlog).
    pub connections: usize,
    /// The request head within this.
    pub header: Duration,
    /// The whole connection within this.
    pub whole: Duration,
    pub keep_alive: bool,
}

/// The plain HTTP listener's limits.
pub const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    header: HEADER_TIMEOUT,
    whole: REQUEST_TIMEOUT,
    keep_alive: false,
};

/// Accepts on `listener` forever, at most `limits.connections` at once;
/// `each` serves one accepted connection.
pub async fn accept<F, Fut>(listener: TcpListener, limits: &Limits, mut each: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.connections));
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
        let connection = each(tcp, peer);
        tokio::spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

/// Serves `router` on one connection (HTTP/1.1) within `limits`.
pub async fn connection<IO>(io: IO, router: Router, limits: &Limits, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(limits.keep_alive)
        .max_buf_size(MAX_HEAD);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(limits.whole, connection).await {
        Err(_) => tracing::debug!(client = %peer, "http: connection timed out"),
        Ok(Err(e)) => tracing::debug!(client = %peer, "http: {e}"),
        Ok(Ok(())) => {}
    }
}

/// Serves `router` on an already bound socket, forever.
pub async fn serve(listener: TcpListener, router: Router) {
    accept(listener, &LIMITS, |tcp, peer| {
        let router = router.clone();
        async move { connection(tcp, router, &LIMITS, peer).await }
    })
    .await;
}
