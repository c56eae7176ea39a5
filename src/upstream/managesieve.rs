//! Logging in to a ManageSieve upstream (Dovecot's managesieve-login,
//! RFC 5804).
//!
//! Sequence: with `tls = "starttls"` the greeting is read, `STARTTLS` sent
//! and the capabilities the server re-sends under TLS read (§2.2). Then, in
//! one write, `XCLIENT ADDR= PORT=` with the client's real address (Dovecot
//! honours it from `login_trusted_networks`; otherwise it answers `NO` and
//! the login goes on without it) and `AUTHENTICATE "PLAIN" "<base64>"`:
//! as the master user with authzid = the user, or the client's own PLAIN
//! message (passthrough). Then the greeting (unless already read), the
//! XCLIENT answer and the login answer are read: one round trip.
//!
//! Whose credentials a `NO` refused is told as for IMAP ([`refusal`]):
//! `NO (TRYLATER)` and `BYE` are the upstream's temporary trouble (§1.3).
//! Responses are read with their literals, every line and literal bounded.
//!
//! [`capabilities`] keeps the upstream's `SIEVE`, `NOTIFY` and
//! `MAXREDIRECTS` capabilities, learned from one connection of the proxy's
//! own and refreshed in the background, so the front-end can advertise the
//! Sieve extensions the upstream really has.

use super::{
    BoxFuture, ClientInfo, Error, LoggedIn, LoginContext, Password, PasswordReply, Refusal, Target,
};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::managesieve::syntax::{self, Status};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use tokio::io::AsyncWriteExt;

mod capabilities;
pub use capabilities::{
    capabilities, known_capabilities, learned_capabilities, Capabilities, DEFAULT_SIEVE,
};

/// The longest line, and the longest response with its literals.
const MAX_LINE: usize = 64 * 1024;
/// At most this many capability lines are kept from a greeting.
const MAX_CAPABILITY_LINES: usize = 64;

/// The upstream's answer to a login.
pub enum Reply {
    /// Logged in; `LoggedIn` carries the `OK` line for the client.
    Ok(LoggedIn),
    /// `NO`: the response line as sent, and the response parsed.
    No {
        line: Vec<u8>,
        response: syntax::Response,
    },
}

/// A connected, not yet authenticated upstream session.
pub struct Session {
    stream: UpstreamStream,
    reader: LineReader,
    /// The greeting is read after the login was sent (not with STARTTLS,
    /// which needs it first).
    greeting_unread: bool,
    /// The capabilities of the last greeting read (RFC 5804 §1.7).
    pub capabilities: Vec<(String, Option<Vec<u8>>)>,
}

impl Session {
    /// Connects (for `client`'s session, or the proxy's own with `None`);
    /// with `tls = "starttls"` reads the greeting and upgrades.
    pub async fn open(target: &Target, client: Option<ClientInfo>) -> Result<Session, Error> {
        let stream = target.connect(client).await?;
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
            greeting_unread: true,
            capabilities: Vec::new(),
        };
        if target.config.tls == TlsMode::StartTls {
            s.greeting().await?;
            s.send(b"STARTTLS\r\n").await?;
            let answer = s.response().await?;
            if answer.status != Status::Ok {
                return Err(Error::Tls("STARTTLS refused".into()));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
            // RFC 5804 §2.2: the capabilities again, under TLS.
            s.greeting().await?;
        }
        Ok(s)
    }

    /// Reads capability lines up to the `OK` that ends them, into
    /// [`Session::capabilities`].
    async fn greeting(&mut self) -> Result<(), Error> {
        let mut capabilities = Vec::new();
        loop {
            let line = self.full_line().await?;
            if let Some(response) = syntax::parse_response(&line) {
                if response.status != Status::Ok {
                    return Err(Error::Protocol(format!(
                        "upstream refused the connection: {}",
                        super::printable(&line)
                    )));
                }
                self.greeting_unread = false;
                self.capabilities = capabilities;
                return Ok(());
            }
            let Some(capability) = syntax::parse_capability(&line) else {
                return Err(Error::Protocol(format!(
                    "unexpected line in the capabilities: {}",
                    super::printable(&line)
                )));
            };
            if capabilities.len() < MAX_CAPABILITY_LINES {
                capabilities.push(capability);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)
    }

    /// Reads one response (`OK`/`NO`/`BYE`); anything else, such as a SASL
    /// challenge, is a protocol error: we only send complete logins.
    async fn response(&mut self) -> Result<syntax::Response, Error> {
        let line = self.full_line().await?;
        syntax::parse_response(&line).ok_or_else(|| {
            Error::Protocol(format!(
                "unexpected upstream response: {}",
                super::printable(&line)
            ))
        })
    }

    /// One line with the literals it announces inline, bounded in total.
    async fn full_line(&mut self) -> Result<Vec<u8>, Error> {
        let mut full = self.line().await?;
        let mut segment = 0;
        while let Some((n, _)) = syntax::trailing_literal(&full[segment..]) {
            if full.len().saturating_add(n) > MAX_LINE {
                return Err(Error::Protocol("over-long literal from upstream".into()));
            }
            let data = self
                .reader
                .read_exact(&mut self.stream, n)
                .await
                .map_err(Error::io)?
                .ok_or_else(|| Error::Protocol("upstream closed the connection".into()))?;
            full.extend_from_slice(b"\r\n");
            full.extend_from_slice(&data);
            segment = full.len();
            let rest = self.line().await?;
            full.extend_from_slice(&rest);
        }
        Ok(full)
    }

    async fn line(&mut self) -> Result<Vec<u8>, Error> {
        match self
            .reader
            .read_line(&mut self.stream)
            .await
            .map_err(Error::io)?
        {
            Line::Data(l) => Ok(l),
            Line::TooLong => Err(Error::Protocol("over-long line from upstream".into())),
            Line::Eof => Err(Error::Protocol("upstream closed the connection".into())),
        }
    }

    /// Sends `XCLIENT` (for a client's session) and `AUTHENTICATE "PLAIN"`
    /// with `plain` (base64) in one write, and returns the verdict.
    pub async fn authenticate(
        mut self,
        client: Option<ClientInfo>,
        plain: &Secret,
    ) -> Result<Reply, Error> {
        // Room for XCLIENT and the literal form: `out` never reallocates
        // (a reallocation would leave an unwiped copy behind).
        let mut out = Vec::with_capacity(plain.expose().len() + 160);
        if let Some(client) = client {
            out.extend_from_slice(xclient_command(client).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"AUTHENTICATE \"PLAIN\" ");
        // Each copy of the credentials is wiped: this one and `out`.
        let credentials = zeroize::Zeroizing::new(syntax::client_string(plain.expose().as_bytes()));
        out.extend_from_slice(&credentials);
        out.extend_from_slice(b"\r\n");
        let sent = self.send(&out).await;
        // The command carries the master secret or the client's password.
        zeroize::Zeroize::zeroize(&mut out);
        sent?;
        if self.greeting_unread {
            self.greeting().await?;
        }
        if client.is_some() {
            let answer = self.response().await?;
            if answer.status != Status::Ok {
                tracing::debug!("upstream did not take XCLIENT (login_trusted_networks?)");
            }
        }
        let line = self.full_line().await?;
        let Some(response) = syntax::parse_response(&line) else {
            return Err(Error::Protocol(format!(
                "unexpected answer to AUTHENTICATE: {}",
                super::printable(&line)
            )));
        };
        match response.status {
            Status::Ok => Ok(Reply::Ok(LoggedIn {
                buffered: self.reader.take_buffered(),
                stream: self.stream,
                reply: vec![line],
            })),
            Status::No => Ok(Reply::No { line, response }),
            Status::Bye => Err(Error::Protocol(format!(
                "upstream ended the session: {}",
                super::printable(&line)
            ))),
        }
    }

    /// Ends the proxy's own session politely (best effort).
    async fn logout(mut self) {
        if self.send(b"LOGOUT\r\n").await.is_ok() {
            let _ = self.response().await;
        }
    }
}

/// `XCLIENT ADDR= PORT=` as Dovecot's login services take it (an IPv6
/// address as is, an IPv4-mapped one as IPv4).
pub fn xclient_command(client: ClientInfo) -> String {
    let ip = match client.peer.ip() {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(v6),
        },
        v4 => v4,
    };
    format!("XCLIENT ADDR={ip} PORT={}", client.peer.port())
}

/// Logs in as `user` with the master credentials (SASL PLAIN, authzid = user).
pub async fn master_login(
    target: &Target,
    client: ClientInfo,
    user: &str,
) -> Result<LoggedIn, Error> {
    let UpstreamLogin::MasterUser { username, secret } = &target.config.login else {
        return Err(Error::Protocol(
            "ManageSieve upstreams log in with login.method = \"master-user\"".into(),
        ));
    };
    let session = Session::open(target, Some(client)).await?;
    let credentials = plain(user, username, secret);
    let (line, response) = match session.authenticate(Some(client), &credentials).await? {
        Reply::Ok(logged_in) => {
            target.master_proof.record(true);
            return Ok(logged_in);
        }
        Reply::No { line, response } => (line, response),
    };
    let probe = master_credentials_accepted(target, client, username, secret);
    let by = target
        .master_proof
        .settle(refusal(&response), probe)
        .await?;
    Err(Error::Refused {
        reply: super::printable(&line),
        by,
    })
}

/// SASL PLAIN as the master user for `user`, base64. Every intermediate
/// copy of the master secret is a Secret: zeroized on drop.
fn plain(user: &str, master: &str, secret: &Secret) -> Secret {
    let plain = Secret::new(format!("{user}\0{master}\0{}", secret.expose()));
    Secret::new(sasl::encode(plain.expose().as_bytes()))
}

/// A user name every Dovecot accepts and no site has (as for IMAP).
const PROBE_USER: &str = "oauthbearerproxyprobe";

/// Whose credentials Dovecot's managesieve-login refused with `NO` to a
/// master login, when its reply says so (Dovecot 2.3.19, master passdb
/// with `pass = yes`; it sends no response code for these):
/// - `NO "Authorization failed"`: the master secret was right, the user
///   may not be logged into. The user's.
/// - `NO "Authentication failed."`: a wrong master secret, **or** a user
///   name outside `auth_username_chars`: `None`, the caller probes once.
/// - `NO (TRYLATER) ...` and anything else: Dovecot's own trouble.
pub fn refusal(response: &syntax::Response) -> Option<Refusal> {
    let text = response.text.as_deref().unwrap_or_default();
    if response.code.is_some() {
        Some(Refusal::Upstream)
    } else if text.starts_with(b"Authorization failed") {
        Some(Refusal::User)
    } else if text.starts_with(b"Authentication failed") {
        None
    } else {
        Some(Refusal::Upstream)
    }
}

/// After an ambiguous `Authentication failed.`: the same master
/// credentials for [`PROBE_USER`]. Refused the same way: the master secret
/// is wrong (the proxy's misconfiguration); anything past the secret: the
/// user's name was refused. Remembered in the target's `master_proof`.
async fn master_credentials_accepted(
    target: &Target,
    client: ClientInfo,
    username: &str,
    secret: &Secret,
) -> Result<bool, Error> {
    let session = Session::open(target, Some(client)).await?;
    let probe = plain(PROBE_USER, username, secret);
    let accepted = match session.authenticate(Some(client), &probe).await? {
        Reply::Ok(_) => true,
        Reply::No { line, response } => match refusal(&response) {
            Some(Refusal::User) => true,
            None => false,
            Some(_) => {
                return Err(Error::Protocol(format!(
                    "master login probe: {}",
                    super::printable(&line)
                )))
            }
        },
    };
    target.master_proof.record(accepted);
    Ok(accepted)
}

/// Password passthrough: the client's credentials as PLAIN, after
/// `XCLIENT`, so that Dovecot applies its policies (and its failure
/// penalty) to the real client.
pub async fn password_login(
    target: &Target,
    client: ClientInfo,
    password: Password<'_>,
) -> Result<PasswordReply, Error> {
    let session = Session::open(target, Some(client)).await?;
    match session
        .authenticate(Some(client), &password.plain_base64())
        .await?
    {
        Reply::Ok(logged_in) => Ok(PasswordReply::Accepted(logged_in)),
        // The client's own password: any plain NO is its failure.
        Reply::No { line, response } => Ok(PasswordReply::Refused {
            temporary: response.code.as_deref() == Some("TRYLATER"),
            lines: vec![line],
        }),
    }
}

/// The ManageSieve login strategy (Dovecot's managesieve-login).
pub struct Login;

impl super::Strategy for Login {
    fn token_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: LoginContext<'a>,
        user: &'a str,
    ) -> BoxFuture<'a, Result<LoggedIn, Error>> {
        Box::pin(master_login(target, ctx.client, user))
    }

    fn password_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: LoginContext<'a>,
        password: Password<'a>,
    ) -> BoxFuture<'a, Result<PasswordReply, Error>> {
        Box::pin(password_login(target, ctx.client, password))
    }
}

#[cfg(test)]
mod tests;
