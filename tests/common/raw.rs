//! A line-oriented client for transcript tests (plaintext, TLS, STARTTLS),
//! TCP connections from a chosen loopback address, and TLS handshake probes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A line-oriented client for transcript tests, plaintext or TLS.
pub struct Raw {
    stream: RawStream,
    buf: Vec<u8>,
    ca: String,
}

enum RawStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Read for RawStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.read(b),
            RawStream::Tls(s) => s.read(b),
            RawStream::Gone => Ok(0),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.write(b),
            RawStream::Tls(s) => s.write(b),
            RawStream::Gone => Ok(0),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStream::Plain(s) => s.flush(),
            RawStream::Tls(s) => s.flush(),
            RawStream::Gone => Ok(()),
        }
    }
}

pub fn tls_config(ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("cert")).expect("add root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl Raw {
    pub fn connect(port: u16, tls: bool, ca: &str) -> Raw {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Self::over(tcp, tls, ca)
    }

    /// Connects from another loopback source address (e.g. 127.0.0.2), to
    /// be another client IP.
    pub fn connect_from(source: &str, port: u16, tls: bool, ca: &str) -> Raw {
        Self::over(tcp_from(source, port), tls, ca)
    }

    pub fn over(tcp: TcpStream, tls: bool, ca: &str) -> Raw {
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut raw = Raw {
            stream: RawStream::Plain(tcp),
            buf: Vec::new(),
            ca: ca.to_string(),
        };
        if tls {
            raw.upgrade();
        }
        raw
    }

    /// Starts TLS on the connection (after STARTTLS was accepted).
    pub fn upgrade(&mut self) {
        self.upgrade_with(tls_config(&self.ca));
    }

    /// Starts TLS with a given client configuration (e.g. one that keeps
    /// the tickets of earlier connections).
    pub fn upgrade_with(&mut self, config: Arc<rustls::ClientConfig>) {
        let RawStream::Plain(tcp) = std::mem::replace(&mut self.stream, RawStream::Gone) else {
            panic!("already TLS")
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(config, name).expect("tls");
        self.stream = RawStream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
    }

    /// How the TLS handshake went (full, or resumed from a ticket).
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        match &self.stream {
            RawStream::Tls(s) => s.conn.handshake_kind(),
            _ => None,
        }
    }

    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// The next line without CRLF; `None` when the server closed.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Some(String::from_utf8_lossy(&l).into_owned());
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn expect_line(&mut self) -> String {
        self.line().expect("server closed the connection")
    }

    /// Whether nothing arrives for `d` (the connection stays open and
    /// silent); a line or the end of the connection within `d` is `false`.
    pub fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let tcp = match &self.stream {
            RawStream::Plain(s) => s,
            RawStream::Tls(s) => s.get_ref(),
            RawStream::Gone => return false,
        };
        tcp.set_read_timeout(Some(d)).expect("timeout");
        let mut chunk = [0u8; 8192];
        let quiet = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let tcp = match &self.stream {
            RawStream::Plain(s) => s,
            RawStream::Tls(s) => s.get_ref(),
            RawStream::Gone => return quiet,
        };
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        quiet
    }

    /// The next line if one comes within `d`: `Ok(None)` when the server
    /// closed, `Err(())` when nothing (or only part of a line) came in time.
    pub fn line_within(&mut self, d: Duration) -> Result<Option<String>, ()> {
        let deadline = std::time::Instant::now() + d;
        let mut closed = false;
        while !closed && !self.buf.contains(&b'\n') {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Some(tcp) = self.tcp() else {
                return Ok(None);
            };
            if left.is_zero() {
                tcp.set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                return Err(());
            }
            tcp.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => {}
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => closed = true,
                    _ => panic!("read: {e}"),
                },
            }
        }
        if let Some(tcp) = self.tcp() {
            tcp.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
        }
        Ok(if closed { None } else { self.line() })
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            RawStream::Plain(s) => Some(s),
            RawStream::Tls(s) => Some(s.get_ref()),
            RawStream::Gone => None,
        }
    }

    /// Reads lines up to and including the first one starting with `prefix`.
    pub fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("closed before {prefix:?}; got {lines:?}"));
            let done = l.starts_with(prefix);
            lines.push(l);
            if done {
                return lines;
            }
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source`.
pub fn tcp_from(source: &str, port: u16) -> TcpStream {
    tcp_from_with(source, port, None)
}

/// [`tcp_from`] with a receive buffer of `recv_buffer` bytes (a client
/// whose window fills up at once).
pub fn tcp_from_with(source: &str, port: u16, recv_buffer: Option<u32>) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let src: std::net::SocketAddr = format!("{source}:0").parse().expect("source address");
    let dst: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let tcp = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            if let Some(size) = recv_buffer {
                sock.set_recv_buffer_size(size)?;
            }
            sock.bind(src)?;
            sock.connect(dst).await
        })
        .expect("connect from source address");
    let tcp = tcp.into_std().expect("std stream");
    tcp.set_nonblocking(false).expect("blocking");
    tcp
}

/// Starts a TLS handshake with `port` and reads the server's first flight
/// without ever sending the client's Finished; returns the application
/// data that flight carried (half-RTT data: the greeting or banner).
pub fn first_flight_plaintext(port: u16, ca: &str) -> Vec<u8> {
    use std::io::{ErrorKind, Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(tls_config(ca), name).expect("client");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The ClientHello, and nothing after it.
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    tcp.write_all(&hello).expect("send client hello");
    let mut plaintext = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match conn.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("reading the server's flight: {e}"),
        }
        conn.process_new_packets().expect("server flight");
        let mut chunk = [0u8; 4096];
        match conn.reader().read(&mut chunk) {
            Ok(n) => plaintext.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading plaintext: {e}"),
        }
        if plaintext.ends_with(b"\r\n") {
            break;
        }
    }
    plaintext
}

/// Two TLS connections to `port` from one client configuration (which
/// keeps the tickets it receives), each with a `NOOP` answered; how each
/// handshake went (full, or resumed from the first connection's ticket).
pub fn handshake_kinds(port: u16, ca: &str) -> Vec<rustls::HandshakeKind> {
    let config = tls_config(ca);
    (0..2)
        .map(|_| {
            let mut c = Raw::connect(port, false, ca);
            c.upgrade_with(config.clone());
            c.send("a NOOP\r\n");
            c.until("a OK");
            c.handshake_kind().expect("handshake done")
        })
        .collect()
}
