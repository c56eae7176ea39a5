//! After login: hand over what each side already sent, then copy bytes
//! both ways until either side closes, or until no byte moved either way
//! for the idle timeout (then the client gets its protocol's farewell).
//! Buffers are fixed-size; there is no per-byte work.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

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

/// Relays the session. `client_pending` are bytes the client pipelined
/// behind its login command; `upstream_pending` bytes the upstream sent
/// behind its login reply. Both are delivered first, in order.
///
/// The two directions run independently (a peer that stops reading while
/// it writes cannot stall the other direction). The session ends when the
/// upstream closes (after the client's end was passed on, if it came
/// first), on an I/O error, or after `idle.timeout` with no byte moved
/// either way, a write that does not progress included.
pub async fn run<C, U>(
    client: &mut C,
    client_pending: &[u8],
    upstream: &mut U,
    upstream_pending: &[u8],
    idle: Idle<'_>,
) -> io::Result<Bytes>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let to_upstream = AtomicU64::new(0);
    let to_client = AtomicU64::new(0);
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut upstream_rd, mut upstream_wr) = tokio::io::split(upstream);
    let ended = {
        let up = async {
            write(&mut upstream_wr, client_pending, &activity, &to_upstream).await?;
            copy(&mut client_rd, &mut upstream_wr, &activity, &to_upstream).await?;
            // Half-close: the upstream sees the end and says goodbye.
            upstream_wr.shutdown().await
        };
        let down = async {
            write(&mut client_wr, upstream_pending, &activity, &to_client).await?;
            copy(&mut upstream_rd, &mut client_wr, &activity, &to_client).await
        };
        tokio::pin!(up, down);
        let mut up_done = false;
        loop {
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(e) => break Err(e),
                },
                r = &mut down => break r.map(|()| false),
                () = activity.idle(idle.timeout) => break Ok(true),
            }
        }
    };
    let timed_out = ended?;
    if timed_out {
        let bye = async {
            client_wr.write_all(idle.farewell).await?;
            client_wr.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(5), client_wr.shutdown()).await;
    }
    Ok(Bytes {
        to_upstream: to_upstream.load(Ordering::Relaxed),
        to_client: to_client.load(Ordering::Relaxed),
        idle_timeout: timed_out,
    })
}

/// When a byte last moved, in milliseconds since the relay started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Completes once nothing moved for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Copies until EOF from `from`.
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    activity: &Activity,
    count: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        activity.touch();
        write(to, &buf[..n], activity, count).await?;
    }
}

async fn write<W: AsyncWrite + Unpin>(
    to: &mut W,
    data: &[u8],
    activity: &Activity,
    count: &AtomicU64,
) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    to.write_all(data).await?;
    to.flush().await?;
    activity.touch();
    count.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const IDLE: Idle<'static> = Idle {
        timeout: Duration::from_secs(60),
        farewell: b"* BYE idle\r\n",
    };

    #[tokio::test(start_paused = true)]
    async fn pending_bytes_first_then_both_ways_until_upstream_closes() {
        let (mut client, mut client_peer) = duplex(64);
        let (mut upstream, mut upstream_peer) = duplex(64);
        let relay = tokio::spawn(async move {
            run(
                &mut client,
                b"b1 SELECT\r\n",
                &mut upstream,
                b"* 1 EXISTS\r\n",
                IDLE,
            )
            .await
        });
        let mut buf = vec![0u8; 64];
        let n = upstream_peer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"b1 SELECT\r\n");
        let n = client_peer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"* 1 EXISTS\r\n");
        client_peer.write_all(b"b2 NOOP\r\n").await.unwrap();
        let n = upstream_peer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"b2 NOOP\r\n");
        drop(upstream_peer);
        let bytes = relay.await.unwrap().unwrap();
        assert_eq!(
            (bytes.to_upstream, bytes.to_client, bytes.idle_timeout),
            (20, 12, false)
        );
        // The client sees the end.
        assert_eq!(client_peer.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_sends_the_farewell_and_activity_resets_it() {
        let (mut client, mut client_peer) = duplex(64);
        let (mut upstream, mut upstream_peer) = duplex(64);
        let relay =
            tokio::spawn(async move { run(&mut client, b"", &mut upstream, b"", IDLE).await });
        let mut buf = vec![0u8; 64];
        // Activity every 50 s keeps the session for 150 s.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            client_peer.write_all(b"x NOOP\r\n").await.unwrap();
            let n = upstream_peer.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"x NOOP\r\n");
        }
        assert!(!relay.is_finished());
        tokio::time::sleep(Duration::from_secs(61)).await;
        let bytes = relay.await.unwrap().unwrap();
        assert!(bytes.idle_timeout);
        let n = client_peer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"* BYE idle\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_does_not_stall_the_other_direction() {
        // The client writes a lot and never reads; the upstream answers a
        // lot. Neither direction may wait for the other.
        let (mut client, mut client_peer) = duplex(1024);
        let (mut upstream, upstream_peer) = duplex(1024);
        let relay =
            tokio::spawn(async move { run(&mut client, b"", &mut upstream, b"", IDLE).await });
        let (mut up_rd, mut up_wr) = tokio::io::split(upstream_peer);
        let upstream_side = tokio::spawn(async move {
            // The upstream writes 64 KiB first (blocks: the client does not
            // read), while reading what the client sends concurrently.
            let writer = async { up_wr.write_all(&vec![b'u'; 64 * 1024]).await };
            let reader = async {
                let mut got = 0;
                let mut buf = vec![0u8; 4096];
                while got < 64 * 1024 {
                    match up_rd.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => got += n,
                    }
                }
                got
            };
            let (_, got) = tokio::join!(writer, reader);
            got
        });
        client_peer.write_all(&vec![b'c'; 64 * 1024]).await.unwrap();
        assert_eq!(upstream_side.await.unwrap(), 64 * 1024);
        drop(client_peer);
        let _ = relay.await;
    }
}
