//! The upstream mail server: connect (plain, STARTTLS or implicit TLS) and
//! log in there as the resolved user.
//!
//! - [`imap`]: Dovecot, master user via `AUTHENTICATE PLAIN` with authzid.
//! - [`smtp`]: Postfix, `XCLIENT LOGIN=` (or AUTH PLAIN as a master user).

pub mod imap;
pub mod managesieve;
pub mod pop3;
pub mod smtp;
mod smtp_extensions;

use crate::config::{TlsMode, Upstream};
use crate::stream::{MaybeTls, UpstreamStream};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to upstream {0}")]
    Connect(String),
    #[error("TLS with upstream failed: {0}")]
    Tls(String),
    /// The upstream refused the login; the text is its reply (safe to log:
    /// it never contains what we sent).
    #[error("upstream refused the login: {reply}")]
    Refused { reply: String, by: Refusal },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

/// Whose credentials an upstream refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user's: the upstream does not accept this user (unknown, or a
    /// name it does not allow). An authentication failure for the client.
    User,
    /// The proxy's own (master secret, XCLIENT permission): the proxy's
    /// misconfiguration, a temporary failure for the client.
    Proxy,
    /// Neither: the upstream's own trouble (Dovecot's `[UNAVAILABLE]`,
    /// `[SERVERBUG]`, ...), a temporary failure.
    Upstream,
}

impl Error {
    fn io(e: std::io::Error) -> Self {
        Error::Protocol(format!("I/O: {e}"))
    }
}

/// Bounds a whole upstream login (connect, greeting, STARTTLS, login
/// exchange) by the upstream's `connect-timeout`, so that an upstream that
/// accepts but never greets or answers is a temporary failure, not a hang.
pub async fn bounded<T>(
    target: &Target,
    login: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(target.config.connect_timeout, login)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Connect(format!(
                "{}: no answer within {:?}",
                target.config.address, target.config.connect_timeout
            )))
        })
}

/// Where the client came from, for logs and for the upstream's own
/// policies (IMAP ID x-originating-ip, XCLIENT ADDR/PORT).
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// A configured upstream with its TLS connector, built once.
pub struct Target {
    pub config: Upstream,
    connector: Option<TlsConnector>,
    /// SMTP upstreams: the EHLO keywords last learned from the upstream.
    pub smtp_extensions: smtp::ExtensionCache,
    /// IMAP upstreams: whether the master credentials last worked.
    pub master_proof: imap::MasterProof,
}

impl Target {
    pub fn new(config: Upstream) -> Result<Arc<Self>, crate::tls::TlsError> {
        let connector = match config.tls {
            TlsMode::None => None,
            _ => Some(crate::tls::connector(config.tls_ca.as_deref())?),
        };
        Ok(Arc::new(Self {
            config,
            connector,
            smtp_extensions: smtp::ExtensionCache::default(),
            master_proof: imap::MasterProof::default(),
        }))
    }

    /// Opens the TCP connection (and the TLS session for implicit TLS),
    /// first sending the PROXY v2 header for `client` when configured (a
    /// LOCAL header for the proxy's own connections, `None`).
    /// Timed and counted in the upstream metrics.
    pub async fn connect(&self, client: Option<ClientInfo>) -> Result<UpstreamStream, Error> {
        let started = tokio::time::Instant::now();
        let result = self.open(client).await;
        crate::metrics::global().upstream_connect(
            &self.config.name,
            started.elapsed(),
            result.is_err(),
        );
        result
    }

    /// [`Target::connect`] without the metrics (the health checks').
    pub(crate) async fn open(&self, client: Option<ClientInfo>) -> Result<UpstreamStream, Error> {
        let address = &self.config.address;
        let tcp = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| Error::Connect(format!("{address}: timed out")))?
            .map_err(|e| Error::Connect(format!("{address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut tcp = tcp;
        if self.config.proxy_protocol_v2 {
            let header = match client {
                Some(c) => crate::proxy_protocol::encode_v2(c.peer, c.local),
                None => crate::proxy_protocol::encode_v2_local(),
            };
            tokio::time::timeout(self.config.connect_timeout, tcp.write_all(&header))
                .await
                .map_err(|_| Error::Connect(format!("{address}: timed out")))?
                .map_err(|e| Error::Connect(format!("{address}: {e}")))?;
        }
        match self.config.tls {
            TlsMode::Implicit => self.start_tls(MaybeTls::Plain(tcp)).await,
            _ => Ok(MaybeTls::Plain(tcp)),
        }
    }

    /// Upgrades a plaintext upstream connection to TLS, verifying the certificate.
    pub async fn start_tls(&self, stream: UpstreamStream) -> Result<UpstreamStream, Error> {
        let MaybeTls::Plain(tcp) = stream else {
            return Err(Error::Tls("already TLS".into()));
        };
        let connector = self
            .connector
            .as_ref()
            .ok_or_else(|| Error::Tls("no TLS connector".into()))?;
        let name = ServerName::try_from(self.config.tls_name.clone()).map_err(|_| {
            Error::Tls(format!(
                "`{}` is not a valid server name",
                self.config.tls_name
            ))
        })?;
        let tls = tokio::time::timeout(self.config.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::Tls("handshake timed out".into()))?
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }
}

/// A logged-in upstream session, ready to relay.
pub struct LoggedIn {
    pub stream: UpstreamStream,
    /// Bytes the upstream sent past its login reply (to be relayed first).
    pub buffered: Vec<u8>,
    /// The upstream's success reply as the client should see it, one line
    /// each without CRLF (IMAP: the untagged lines, then the tagged line
    /// without its tag, e.g. `OK [CAPABILITY IMAP4rev1 ...] Logged in`).
    /// Empty when the upstream gave none the client should see (XCLIENT):
    /// the front-end then sends its own success reply.
    pub reply: Vec<Vec<u8>>,
}

/// Who an upstream login is for.
#[derive(Debug, Clone, Copy)]
pub struct LoginContext<'a> {
    pub client: ClientInfo,
    /// The name the client gave in EHLO (SMTP only).
    pub helo: Option<&'a str>,
}

/// A client's own password, relayed for the upstream to check
/// (password passthrough), as SASL PLAIN's three parts.
#[derive(Clone, Copy)]
pub struct Password<'a> {
    pub authzid: &'a [u8],
    pub user: &'a [u8],
    pub password: &'a [u8],
}

impl Password<'_> {
    /// The SASL PLAIN message, base64 (a secret: it holds the password).
    pub fn plain_base64(&self) -> crate::secret::Secret {
        let mut message = zeroize::Zeroizing::new(Vec::with_capacity(
            self.authzid.len() + self.user.len() + self.password.len() + 2,
        ));
        message.extend_from_slice(self.authzid);
        message.push(0);
        message.extend_from_slice(self.user);
        message.push(0);
        message.extend_from_slice(self.password);
        crate::secret::Secret::new(crate::sasl::encode(&message))
    }
}

/// The upstream's verdict on a relayed password.
pub enum PasswordReply {
    Accepted(LoggedIn),
    /// Refused: the upstream's reply (as in [`LoggedIn::reply`]), and
    /// whether the refusal is the upstream's temporary trouble rather than
    /// the client's fault.
    Refused {
        lines: Vec<Vec<u8>>,
        temporary: bool,
    },
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How one upstream protocol logs in: as the resolved user with the
/// proxy's own credentials (after a token), or with the client's password.
pub trait Strategy: Send + Sync {
    fn token_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: LoginContext<'a>,
        user: &'a str,
    ) -> BoxFuture<'a, Result<LoggedIn, Error>>;

    fn password_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: LoginContext<'a>,
        password: Password<'a>,
    ) -> BoxFuture<'a, Result<PasswordReply, Error>>;
}

/// The login strategy of each protocol: the one place a new upstream
/// protocol is registered.
pub fn strategy(protocol: crate::config::Protocol) -> &'static dyn Strategy {
    use crate::config::Protocol;
    match protocol {
        Protocol::Imap => &imap::Login,
        Protocol::Smtp => &smtp::Login,
        Protocol::Pop3 => &pop3::Login,
        Protocol::ManageSieve => &managesieve::Login,
    }
}

/// Upstream text made safe for a log line.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(200)
        .filter(|c| !c.is_control())
        .collect()
}
