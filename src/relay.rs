//! After login: hand over what each side already sent, then copy bytes
//! both ways until either side closes, or until no byte moved either way
//! for the idle timeout (then the client gets its protocol's farewell).
//! Buffers are fixed-size; there is no per-byte work.

use crate::stream::{ClientStream, UpstreamStream};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUF: usize = 16 * 1024;

#[derive(Debug, Default, Clone, Copy)]
pub struct Bytes {
    pub to_upstream: u64,
    pub to_client: u64,
    /// The session ended because nothing moved for the idle timeout.
    pub idle_timeout: bool,
}

/// The idle limit of a relayed session.
#[derive(Debug, Clone, Copy)]
pub struct Idle<'a> {
    /// No bytes either way for this long ends the session.
    pub timeout: Duration,
    /// Sent to the client before closing (`* BYE ...`, `421 ...`).
    pub farewell: &'a [u8],
}

enum Event {
    Client(io::Result<usize>),
    Upstream(io::Result<usize>),
    Idle,
}

/// Relays the session. `client_pending` are bytes the client pipelined
/// behind its login command; `upstream_pending` bytes the upstream sent
/// behind its login reply. Both are delivered first, in order.
pub async fn run(
    client: &mut ClientStream,
    client_pending: &[u8],
    upstream: &mut UpstreamStream,
    upstream_pending: &[u8],
    idle: Idle<'_>,
) -> io::Result<Bytes> {
    let mut bytes = Bytes {
        to_upstream: client_pending.len() as u64,
        to_client: upstream_pending.len() as u64,
        idle_timeout: false,
    };
    if !upstream_pending.is_empty() {
        send(client, upstream_pending, idle.timeout).await?;
    }
    if !client_pending.is_empty() {
        send(upstream, client_pending, idle.timeout).await?;
    }
    let mut from_client = vec![0u8; BUF];
    let mut from_upstream = vec![0u8; BUF];
    let mut client_open = true;
    loop {
        // Reads are cancel-safe: a read that lost the race returned nothing.
        let event = tokio::select! {
            r = client.read(&mut from_client), if client_open => Event::Client(r),
            r = upstream.read(&mut from_upstream) => Event::Upstream(r),
            _ = tokio::time::sleep(idle.timeout) => Event::Idle,
        };
        match event {
            Event::Client(Ok(0)) => {
                // Half-close: the upstream sees the end and says goodbye.
                client_open = false;
                let _ = upstream.shutdown().await;
            }
            Event::Client(Ok(n)) => {
                send(upstream, &from_client[..n], idle.timeout).await?;
                bytes.to_upstream += n as u64;
            }
            Event::Upstream(Ok(0)) => {
                let _ = tokio::time::timeout(idle.timeout, client.shutdown()).await;
                return Ok(bytes);
            }
            Event::Upstream(Ok(n)) => {
                send(client, &from_upstream[..n], idle.timeout).await?;
                bytes.to_client += n as u64;
            }
            Event::Client(Err(e)) | Event::Upstream(Err(e)) => return Err(e),
            Event::Idle => {
                bytes.idle_timeout = true;
                let bye = async {
                    client.write_all(idle.farewell).await?;
                    client.shutdown().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
                return Ok(bytes);
            }
        }
    }
}

/// Writes and flushes; a peer that does not read for the idle timeout is
/// as idle as one that does not write.
async fn send<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let write = async {
        stream.write_all(data).await?;
        stream.flush().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading"))?
}
