//! After login: hand over what each side already sent, then copy bytes
//! both ways until either side closes. Buffers are fixed-size; there is no
//! per-byte work.

use crate::stream::{ClientStream, UpstreamStream};
use std::io;
use tokio::io::AsyncWriteExt;

const BUF: usize = 16 * 1024;

#[derive(Debug, Default, Clone, Copy)]
pub struct Bytes {
    pub to_upstream: u64,
    pub to_client: u64,
}

/// Relays the session. `client_pending` are bytes the client pipelined
/// behind its login command; `upstream_pending` bytes the upstream sent
/// behind its login reply. Both are delivered first, in order.
pub async fn run(
    client: &mut ClientStream,
    client_pending: &[u8],
    upstream: &mut UpstreamStream,
    upstream_pending: &[u8],
) -> io::Result<Bytes> {
    if !upstream_pending.is_empty() {
        client.write_all(upstream_pending).await?;
        client.flush().await?;
    }
    if !client_pending.is_empty() {
        upstream.write_all(client_pending).await?;
        upstream.flush().await?;
    }
    let (to_upstream, to_client) =
        tokio::io::copy_bidirectional_with_sizes(client, upstream, BUF, BUF).await?;
    Ok(Bytes {
        to_upstream: to_upstream + client_pending.len() as u64,
        to_client: to_client + upstream_pending.len() as u64,
    })
}
