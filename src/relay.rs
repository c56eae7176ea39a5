//! After login: hand over what each side already sent, then copy bytes
//! both ways until the upstream closes (the client's end is passed on to
//! it first), or until no byte moved either way for the idle timeout (then
//! the client gets its protocol's farewell). There is no per-byte work.
//!
//! An idle session holds no copy buffer: bytes are read into a per-thread
//! scratch buffer and written on at once; only what the writer cannot take
//! yet is kept (in a buffer that is freed again when the session goes
//! quiet). With 16 KiB buffers per direction held for the session's life,
//! an idle TLS session cost ~43 KiB of RSS; see docs/benchmarks.md.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Size of the per-thread scratch buffer, i.e. of one read.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    /// No bytes either way for this long ends the session (a write that
    /// does not progress counts as no bytes).
    pub timeout: Duration,
    /// Sent to the client before closing (`* BYE ...`, `421 ...`).
    pub farewell: &'a [u8],
}

/// Relays the session. `client_pending` are bytes the client pipelined
/// behind its login command; `upstream_pending` bytes the upstream sent
/// behind its login reply. Both are delivered first, in order.
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
    let handover = async {
        if !upstream_pending.is_empty() {
            client.write_all(upstream_pending).await?;
            client.flush().await?;
        }
        if !client_pending.is_empty() {
            upstream.write_all(client_pending).await?;
            upstream.flush().await?;
        }
        Ok::<(), io::Error>(())
    };
    let handed_over = tokio::time::timeout(idle.timeout, handover).await;
    let (to_upstream, to_client, idle_timeout) = match handed_over {
        Ok(r) => {
            r?;
            relay_until_idle(client, upstream, idle.timeout).await?
        }
        Err(_) => (0, 0, true),
    };
    if idle_timeout {
        let bye = async {
            client.write_all(idle.farewell).await?;
            client.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
    }
    Ok(Bytes {
        to_upstream: to_upstream + client_pending.len() as u64,
        to_client: to_client + upstream_pending.len() as u64,
        idle_timeout,
    })
}

/// Copies both ways until the upstream → client direction is done (the
/// upstream closed and the client was told), or nothing was written either
/// way for `idle`. Returns bytes client → upstream, upstream → client, and
/// whether it ended on the idle timeout.
async fn relay_until_idle<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle: Duration,
) -> io::Result<(u64, u64, bool)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Direction::default();
    let mut down = Direction::default();
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    poll_fn(|cx| {
        let before = up.copied + down.copied;
        // Polled for its progress; its end (the client's EOF) is passed on
        // to the upstream, which then closes its side.
        let _ = up.poll(cx, Pin::new(&mut *client), Pin::new(&mut *upstream))?;
        let down_done = down.poll(cx, Pin::new(&mut *upstream), Pin::new(&mut *client))?;
        if down_done.is_ready() {
            // The upstream closed: the session is over, whatever the
            // client still sends.
            return Poll::Ready(Ok((up.copied, down.copied, false)));
        }
        if up.copied + down.copied != before {
            sleep.as_mut().reset(Instant::now() + idle);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok((up.copied, down.copied, true)));
        }
        Poll::Pending
    })
    .await
}

/// Like `tokio::io::copy_bidirectional`: when one side reaches EOF the
/// other's write half is shut down and the other direction goes on; done
/// when both directions are. Returns the bytes copied a → b and b → a.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a_to_b = Direction::default();
    let mut b_to_a = Direction::default();
    poll_fn(|cx| {
        let ab = a_to_b.poll(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let ba = b_to_a.poll(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
        ready!(ab);
        ready!(ba);
        Poll::Ready(Ok((a_to_b.copied, b_to_a.copied)))
    })
    .await
}

#[derive(Default)]
struct Direction {
    /// Read but not yet written (the writer was not ready); `pos` is
    /// where the unwritten part starts.
    pending: Vec<u8>,
    pos: usize,
    /// Written since the last flush.
    needs_flush: bool,
    eof: bool,
    done: bool,
    copied: u64,
}

impl Direction {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            // What the writer could not take before goes first.
            while self.pos < self.pending.len() {
                let n = ready!(w.as_mut().poll_write(cx, &self.pending[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.copied += n as u64;
                self.needs_flush = true;
            }
            self.pending.clear();
            self.pos = 0;
            if self.eof {
                if self.needs_flush {
                    ready!(w.as_mut().poll_flush(cx))?;
                    self.needs_flush = false;
                }
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                self.pending = Vec::new();
                return Poll::Ready(Ok(()));
            }
            let step = SCRATCH_BUF.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                if scratch.len() < SCRATCH {
                    scratch.resize(SCRATCH, 0);
                }
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match r.as_mut().poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        let filled = buf.filled().len();
                        if filled == 0 {
                            self.eof = true;
                            return Poll::Ready(Ok(()));
                        }
                        let mut off = 0;
                        while off < filled {
                            match w.as_mut().poll_write(cx, &scratch[off..filled]) {
                                Poll::Ready(Ok(0)) => {
                                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                                }
                                Poll::Ready(Ok(n)) => {
                                    off += n;
                                    self.copied += n as u64;
                                    self.needs_flush = true;
                                }
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                                Poll::Pending => {
                                    // Keep the rest; retried first next time.
                                    self.pending.extend_from_slice(&scratch[off..filled]);
                                    break;
                                }
                            }
                        }
                        Poll::Ready(Ok(()))
                    }
                }
            });
            match step {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing to read: push out what was written, and let
                    // the session go quiet without a buffer.
                    if self.needs_flush {
                        match w.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.needs_flush = false,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => {}
                        }
                    }
                    if self.pending.capacity() > 0 && self.pending.is_empty() {
                        self.pending = Vec::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt};

    #[tokio::test]
    async fn copies_both_ways_and_shuts_down() {
        let (mut a_outer, mut a) = duplex(1024);
        let (mut b, mut b_outer) = duplex(1024);
        let relay = tokio::spawn(async move { copy_bidirectional(&mut a, &mut b).await });
        // Larger than the duplex capacity and the scratch buffer: exercises
        // writes that are not ready yet.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = big.clone();
        let writer = tokio::spawn(async move {
            a_outer.write_all(&big).await.unwrap();
            a_outer.shutdown().await.unwrap();
            let mut back = Vec::new();
            a_outer.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        b_outer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
        b_outer.write_all(b"* BYE\r\n").await.unwrap();
        b_outer.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"* BYE\r\n");
        let (ab, ba) = relay.await.unwrap().unwrap();
        assert_eq!((ab, ba), (200_000, 7));
    }

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
