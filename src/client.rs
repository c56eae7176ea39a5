//! The client connection during pre-authentication: the stream, a bounded
//! line reader, the peer's addresses and the pre-auth deadline. Both
//! protocol front-ends drive one of these.

use crate::line::{Line, LineReader};
use crate::stream::{ClientStream, MaybeTls};
use std::io;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// What the client sent next.
#[derive(Debug)]
pub enum Input {
    Line(Vec<u8>),
    TooLong,
    Closed,
    /// The pre-authentication deadline passed.
    TimedOut,
}

pub struct Client {
    pub stream: ClientStream,
    reader: LineReader,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    deadline: Instant,
    tls_handshake_timeout: std::time::Duration,
    /// The greeting (IMAP) or banner (SMTP) already went out, in the
    /// server's first TLS flight (half-RTT data, see `server::handle`).
    pub greeted: bool,
}

impl Client {
    pub fn new(
        stream: ClientStream,
        peer: SocketAddr,
        local: SocketAddr,
        max_line: usize,
        deadline: Instant,
    ) -> Self {
        Self {
            stream,
            reader: LineReader::new(max_line),
            peer,
            local,
            deadline,
            tls_handshake_timeout: std::time::Duration::from_secs(30),
            greeted: false,
        }
    }

    /// Whether the pre-auth deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    pub fn info(&self) -> crate::upstream::ClientInfo {
        crate::upstream::ClientInfo {
            peer: self.peer,
            local: self.local,
        }
    }

    pub async fn read_line(&mut self) -> Input {
        match tokio::time::timeout_at(self.deadline, self.reader.read_line(&mut self.stream)).await
        {
            Err(_) => Input::TimedOut,
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => Input::Closed,
            Ok(Ok(Line::TooLong)) => Input::TooLong,
            Ok(Ok(Line::Data(l))) => Input::Line(l),
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal); `None` on EOF or timeout.
    pub async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        tokio::time::timeout_at(self.deadline, self.reader.read_exact(&mut self.stream, n))
            .await
            .ok()?
            .ok()?
    }

    /// Writes and flushes `bytes`, bounded by the pre-auth deadline like
    /// every read: a client that stops reading cannot hold its connection
    /// (and its place in the connection limits) past it.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout_at(self.deadline, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "pre-auth deadline passed"))?
    }

    /// Upgrades to TLS. Plaintext the client sent behind STARTTLS is
    /// discarded, never interpreted after the handshake.
    pub async fn start_tls(mut self, acceptor: &TlsAcceptor) -> io::Result<Client> {
        self.reader.discard_buffered();
        let MaybeTls::Plain(tcp) = self.stream else {
            return Err(io::Error::other("TLS is already active"));
        };
        // The handshake is part of pre-authentication: bounded by both.
        let until = self
            .deadline
            .min(Instant::now() + self.tls_handshake_timeout);
        let tls = tokio::time::timeout_at(until, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.stream = MaybeTls::Tls(Box::new(tls));
        Ok(self)
    }

    /// Bytes the client pipelined past its last command (for the relay).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.reader.take_buffered()
    }
}

/// The `result` word of a connection that ended on an I/O error during
/// pre-authentication: `timeout` when a write ran into the deadline (a
/// client that stopped reading), else `closed`.
pub fn io_end(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::TimedOut {
        "timeout"
    } else {
        "closed"
    }
}
