//! After login: hand over what each side already sent, then copy bytes
//! both ways until either side closes. There is no per-byte work.
//!
//! An idle session holds no copy buffer: bytes are read into a per-thread
//! scratch buffer and written on at once; only what the writer cannot take
//! yet is kept (in a buffer that is freed again when the session goes
//! quiet). With 16 KiB buffers per direction held for the session's life,
//! an idle TLS session cost ~43 KiB of RSS; see docs/benchmarks.md.

use crate::stream::{ClientStream, UpstreamStream};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Size of the per-thread scratch buffer, i.e. of one read.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    let (to_upstream, to_client) = copy_bidirectional(client, upstream).await?;
    Ok(Bytes {
        to_upstream: to_upstream + client_pending.len() as u64,
        to_client: to_client + upstream_pending.len() as u64,
    })
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
}
