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
use std::sync::atomic::{AtomicU64, Ordering};
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

/// How a relayed session ended; the byte counts survive every ending.
#[derive(Debug)]
pub struct Ended {
    pub bytes: Bytes,
    pub how: End,
}

#[derive(Debug)]
pub enum End {
    /// The upstream closed (after the client's end was passed on, or on
    /// its own): a normal end.
    Closed,
    /// The client vanished (see [`is_hang_up`]): a normal end too.
    HungUp(io::Error),
    /// Nothing moved for the idle timeout; the client got the farewell.
    Idle,
    /// The session was ended from outside (revoked, logout, kicked); the
    /// client got the farewell that came with the stop.
    Stopped,
    /// The connection to the upstream failed, or the client's in a way
    /// that is not a hang-up.
    Failed(io::Error),
}

/// Where an I/O error happened.
enum Side {
    Client,
    Upstream,
}

/// A client that vanishes (reset, broken pipe, TCP closed without TLS
/// close_notify) ends its session as a close does: mail clients on
/// flaky networks do this all day, and a client that hangs up right
/// after `QUIT`/`LOGOUT` makes the last write (the goodbye) fail.
fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
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

/// Bytes a session moved so far, readable while it runs (`who`).
#[derive(Debug, Default)]
pub struct Traffic {
    pub to_upstream: AtomicU64,
    pub to_client: AtomicU64,
}

/// What else ends a relayed session besides its peers and the idle limit.
pub struct Control<'a, S> {
    /// Completes with the farewell to send when the session is ended from
    /// outside (`std::future::pending()` for never).
    pub stop: S,
    /// Where the byte counts are kept up to date while the session runs.
    pub traffic: &'a Traffic,
}

/// How the copy loop stopped without an I/O error.
enum Quit {
    Closed,
    Idle,
    Stopped(Vec<u8>),
}

/// Relays the session. `client_pending` are bytes the client pipelined
/// behind its login command; `upstream_pending` bytes the upstream sent
/// behind its login reply. Both are delivered first, in order.
pub async fn run<C, U, S>(
    client: &mut C,
    client_pending: &[u8],
    upstream: &mut U,
    upstream_pending: &[u8],
    idle: Idle<'_>,
    control: Control<'_, S>,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: Future<Output = Vec<u8>>,
{
    let handover = async {
        if !upstream_pending.is_empty() {
            client
                .write_all(upstream_pending)
                .await
                .map_err(|e| (Side::Client, e))?;
            client.flush().await.map_err(|e| (Side::Client, e))?;
        }
        if !client_pending.is_empty() {
            upstream
                .write_all(client_pending)
                .await
                .map_err(|e| (Side::Upstream, e))?;
            upstream.flush().await.map_err(|e| (Side::Upstream, e))?;
        }
        Ok::<(), (Side, io::Error)>(())
    };
    let mut counts = Counts::default();
    let stop = control.stop;
    tokio::pin!(stop);
    let result = match tokio::time::timeout(idle.timeout, handover).await {
        Ok(Ok(())) => {
            let mut copy = Copy {
                idle: idle.timeout,
                stop: stop.as_mut(),
                traffic: control.traffic,
                counts: &mut counts,
            };
            copy.until_done(client, upstream).await
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Quit::Idle),
    };
    let (how, farewell) = match result {
        Ok(Quit::Closed) => (End::Closed, None),
        Ok(Quit::Idle) => (End::Idle, Some(idle.farewell.to_vec())),
        Ok(Quit::Stopped(bye)) => (End::Stopped, Some(bye)),
        Err((Side::Client, e)) if is_hang_up(&e) => (End::HungUp(e), None),
        Err((_, e)) => (End::Failed(e), None),
    };
    if let Some(farewell) = farewell {
        let bye = async {
            client.write_all(&farewell).await?;
            client.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
        // The upstream is closed cleanly too (TLS close_notify, then FIN).
        let _ = tokio::time::timeout(Duration::from_secs(5), upstream.shutdown()).await;
    }
    Ended {
        bytes: Bytes {
            to_upstream: counts.to_upstream + client_pending.len() as u64,
            to_client: counts.to_client + upstream_pending.len() as u64,
            idle_timeout: matches!(how, End::Idle),
        },
        how,
    }
}

/// Bytes moved by the copy loop so far.
#[derive(Default)]
struct Counts {
    to_upstream: u64,
    to_client: u64,
}

/// The copy loop's state: what ends it besides the peers, and where its
/// counts go.
struct Copy<'a, 's, S> {
    idle: Duration,
    stop: Pin<&'s mut S>,
    traffic: &'a Traffic,
    counts: &'a mut Counts,
}

impl<S: Future<Output = Vec<u8>>> Copy<'_, '_, S> {
    /// Copies both ways until the upstream → client direction is done (the
    /// upstream closed and the client was told), nothing was written either
    /// way for `idle`, or the stop fired; `counts` holds the bytes moved
    /// however it ended.
    async fn until_done<C, U>(
        &mut self,
        client: &mut C,
        upstream: &mut U,
    ) -> Result<Quit, (Side, io::Error)>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let mut up = Direction::default();
        let mut down = Direction::default();
        let idle = self.idle;
        let sleep = tokio::time::sleep(idle);
        tokio::pin!(sleep);
        let traffic = self.traffic;
        let stop = &mut self.stop;
        let result = poll_fn(|cx| {
            if let Poll::Ready(bye) = stop.as_mut().poll(cx) {
                return Poll::Ready(Ok(Quit::Stopped(bye)));
            }
            let before = up.copied + down.copied;
            // Polled for its progress; its end (the client's EOF) is passed
            // on to the upstream, which then closes its side.
            let up_step = up.poll(cx, Pin::new(&mut *client), Pin::new(&mut *upstream));
            if let Poll::Ready(Err(f)) = up_step {
                return Poll::Ready(Err(f.side(Side::Client, Side::Upstream)));
            }
            let down_step = down.poll(cx, Pin::new(&mut *upstream), Pin::new(&mut *client));
            if up.copied + down.copied != before {
                sleep.as_mut().reset(Instant::now() + idle);
                traffic.to_upstream.store(up.copied, Ordering::Relaxed);
                traffic.to_client.store(down.copied, Ordering::Relaxed);
            }
            match down_step {
                // The upstream closed: the session is over, whatever the
                // client still sends.
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Quit::Closed)),
                Poll::Ready(Err(f)) => {
                    return Poll::Ready(Err(f.side(Side::Upstream, Side::Client)))
                }
                Poll::Pending => {}
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Quit::Idle));
            }
            Poll::Pending
        })
        .await;
        self.counts.to_upstream = up.copied;
        self.counts.to_client = down.copied;
        result
    }
}

/// An I/O error of one direction: in its reader or in its writer.
enum Fault {
    Read(io::Error),
    Write(io::Error),
}

impl Fault {
    /// The side the error happened on, given the direction's reader and writer sides.
    fn side(self, reader: Side, writer: Side) -> (Side, io::Error) {
        match self {
            Fault::Read(e) => (reader, e),
            Fault::Write(e) => (writer, e),
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            Fault::Read(e) | Fault::Write(e) => e,
        }
    }
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
        let ab = a_to_b
            .poll(cx, Pin::new(&mut *a), Pin::new(&mut *b))
            .map_err(Fault::into_io)?;
        let ba = b_to_a
            .poll(cx, Pin::new(&mut *b), Pin::new(&mut *a))
            .map_err(Fault::into_io)?;
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
    ) -> Poll<Result<(), Fault>>
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
                let n = ready!(w.as_mut().poll_write(cx, &self.pending[self.pos..]))
                    .map_err(Fault::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(Fault::Write(io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                self.copied += n as u64;
                self.needs_flush = true;
            }
            self.pending.clear();
            self.pos = 0;
            if self.eof {
                if self.needs_flush {
                    ready!(w.as_mut().poll_flush(cx)).map_err(Fault::Write)?;
                    self.needs_flush = false;
                }
                ready!(w.as_mut().poll_shutdown(cx)).map_err(Fault::Write)?;
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
                    Poll::Ready(Err(e)) => Poll::Ready(Err(Fault::Read(e))),
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
                                    return Poll::Ready(Err(Fault::Write(
                                        io::ErrorKind::WriteZero.into(),
                                    )))
                                }
                                Poll::Ready(Ok(n)) => {
                                    off += n;
                                    self.copied += n as u64;
                                    self.needs_flush = true;
                                }
                                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Write(e))),
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
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Write(e))),
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
#[path = "relay_tests.rs"]
mod tests;
