//! Logging in to a POP3 upstream (Dovecot's pop3-login).
//!
//! Sequence: the greeting (`+OK`; Dovecot adds `[XCLIENT]` when the proxy
//! is in its `login_trusted_networks`), `STLS` when configured (RFC 2595),
//! then `XCLIENT ADDR= PORT=` with the client's real address (only when the
//! greeting offered it: that is how Dovecot's own proxy passes the address
//! on) and its answer, then `AUTH PLAIN <initial response>` (RFC 5034): as
//! the master user with authzid = the user, or the client's own credentials
//! (passthrough), and the login answer.
//!
//! XCLIENT and AUTH are not pipelined: Dovecot's pop3-login answers them in
//! two small writes, the second held back (Nagle) until the proxy
//! acknowledges the first, which a delayed ACK puts off for 40 ms. Sent one
//! after the other, the AUTH carries that acknowledgement: 6–8 ms instead
//! of 42 ms per login on loopback (measured against Dovecot 2.3.19;
//! docs/benchmarks.md).
//!
//! Refusals are classified by their RFC 3206 / RFC 2449 response codes:
//! `[AUTH]` is the credentials' fault, `[SYS/TEMP]` and `[IN-USE]` are the
//! upstream's temporary trouble.

use super::{
    printable, BoxFuture, ClientInfo, Error, LoggedIn, LoginContext, Password, PasswordReply,
    Refusal, Target,
};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use tokio::io::AsyncWriteExt;

const MAX_LINE: usize = 8 * 1024;

/// A connected, not yet authenticated upstream POP3 session.
struct Session {
    stream: UpstreamStream,
    reader: LineReader,
    /// The greeting offered `[XCLIENT]`: the upstream trusts us to pass
    /// the client's address on.
    xclient: bool,
}

/// The upstream's answer to `AUTH PLAIN`.
enum Reply {
    Ok(LoggedIn),
    /// The `-ERR` line.
    Err(Vec<u8>),
}

impl Session {
    /// Connects, reads the greeting and upgrades with STLS when configured.
    async fn open(target: &Target, client: ClientInfo) -> Result<Session, Error> {
        let stream = target.connect(Some(client)).await?;
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
            xclient: false,
        };
        let greeting = s.read_line().await?;
        if !greeting.starts_with(b"+OK") {
            return Err(Error::Protocol(format!(
                "unexpected greeting: {}",
                printable(&greeting)
            )));
        }
        s.xclient = offers_xclient(&greeting);
        if target.config.tls == TlsMode::StartTls {
            s.send(&[b"STLS"]).await?;
            let answer = s.read_line().await?;
            if !answer.starts_with(b"+OK") {
                return Err(Error::Tls(format!("STLS refused: {}", printable(&answer))));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
        }
        Ok(s)
    }

    /// Writes each command with its CRLF, in one write.
    async fn send(&mut self, commands: &[&[u8]]) -> Result<(), Error> {
        let mut out = Vec::with_capacity(commands.iter().map(|c| c.len() + 2).sum());
        for command in commands {
            out.extend_from_slice(command);
            out.extend_from_slice(b"\r\n");
        }
        let written = self.stream.write_all(&out).await;
        // A command may carry the master secret or a password.
        zeroize::Zeroize::zeroize(&mut out);
        written.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
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

    /// Sends XCLIENT (when offered) and reads its answer, then sends
    /// `AUTH PLAIN <initial_response>` and returns the upstream's verdict.
    async fn login(
        mut self,
        client: ClientInfo,
        initial_response: &Secret,
    ) -> Result<Reply, Error> {
        let auth = Secret::new(format!("AUTH PLAIN {}", initial_response.expose()));
        if self.xclient {
            let xclient = xclient_command(client);
            self.send(&[xclient.as_bytes()]).await?;
            let answer = self.read_line().await?;
            if !answer.starts_with(b"+OK") {
                return Err(Error::Protocol(format!(
                    "XCLIENT refused: {}",
                    printable(&answer)
                )));
            }
        }
        self.send(&[auth.expose().as_bytes()]).await?;
        let answer = self.read_line().await?;
        if answer.starts_with(b"+OK") {
            Ok(Reply::Ok(LoggedIn {
                buffered: self.reader.take_buffered(),
                stream: self.stream,
                reply: vec![answer],
            }))
        } else if answer.starts_with(b"-ERR") {
            Ok(Reply::Err(answer))
        } else {
            // A `+ ` continuation: we sent a complete initial response, so
            // the upstream wants something we cannot give.
            Err(Error::Protocol(format!(
                "unexpected answer to AUTH: {}",
                printable(&answer)
            )))
        }
    }
}

/// The POP3 login strategy (Dovecot).
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

/// Logs in as `user` with the master credentials (SASL PLAIN, authzid = user).
async fn master_login(target: &Target, client: ClientInfo, user: &str) -> Result<LoggedIn, Error> {
    let UpstreamLogin::MasterUser { username, secret } = &target.config.login else {
        return Err(Error::Protocol(
            "POP3 upstreams log in with login.method = \"master-user\"".into(),
        ));
    };
    let session = Session::open(target, client).await?;
    // Every intermediate copy of the master secret is a Secret: zeroized on drop.
    let plain = Secret::new(format!("{user}\0{username}\0{}", secret.expose()));
    let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
    let line = match session.login(client, &encoded).await? {
        Reply::Ok(logged_in) => {
            target.master_proof.record(true);
            return Ok(logged_in);
        }
        Reply::Err(line) => line,
    };
    let probe = master_credentials_accepted(target, client, username, secret);
    let by = target.master_proof.settle(refusal(&line), probe).await?;
    Err(Error::Refused {
        reply: printable(&line),
        by,
    })
}

/// A user name every Dovecot accepts and no site has, for the probe in
/// [`master_credentials_accepted`] (the same as the IMAP upstream's).
const PROBE_USER: &str = "oauthbearerproxyprobe";

/// After an ambiguous `-ERR [AUTH] Authentication failed.`: logs in with
/// the same master credentials as [`PROBE_USER`]. Refused the same way
/// again means the master secret is wrong (the proxy's misconfiguration);
/// anything past the secret (`Authorization failed`, or `+OK`) means
/// Dovecot refused the user's name. Remembered in the target's
/// `master_proof`, as for IMAP, so this costs one login at most per TTL.
async fn master_credentials_accepted(
    target: &Target,
    client: ClientInfo,
    username: &str,
    secret: &Secret,
) -> Result<bool, Error> {
    let session = Session::open(target, client).await?;
    let plain = Secret::new(format!("{PROBE_USER}\0{username}\0{}", secret.expose()));
    let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
    let accepted = match session.login(client, &encoded).await? {
        // Logged in as the probe user: the session is dropped, closed.
        Reply::Ok(_) => true,
        Reply::Err(line) => match refusal(&line) {
            Some(Refusal::User) => true,
            None => false,
            Some(_) => {
                return Err(Error::Protocol(format!(
                    "master login probe: {}",
                    printable(&line)
                )))
            }
        },
    };
    target.master_proof.record(accepted);
    Ok(accepted)
}

/// Password passthrough: the client's own credentials as `AUTH PLAIN`
/// (after XCLIENT with its real address, so Dovecot applies its own
/// failure penalty to the client).
async fn password_login(
    target: &Target,
    client: ClientInfo,
    password: Password<'_>,
) -> Result<PasswordReply, Error> {
    let session = Session::open(target, client).await?;
    match session.login(client, &password.plain_base64()).await? {
        Reply::Ok(logged_in) => Ok(PasswordReply::Accepted(logged_in)),
        Reply::Err(line) => Ok(PasswordReply::Refused {
            temporary: is_temporary(&line),
            lines: vec![line],
        }),
    }
}

/// Whether a greeting offers XCLIENT: `+OK [XCLIENT] ...` (Dovecot, to
/// clients in `login_trusted_networks`).
fn offers_xclient(greeting: &[u8]) -> bool {
    response_code(greeting).is_some_and(|code| {
        code.split(|&b| b == b' ')
            .any(|word| word.eq_ignore_ascii_case(b"XCLIENT"))
    })
}

/// The bracketed response code after `+OK ` / `-ERR ` (RFC 2449 section 8).
fn response_code(line: &[u8]) -> Option<&[u8]> {
    let rest = line
        .strip_prefix(b"+OK ")
        .or_else(|| line.strip_prefix(b"-ERR "))?;
    let inner = rest.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    Some(&inner[..end])
}

/// `[SYS/TEMP]` (and its sub-codes) or `[IN-USE]`: try again later.
fn is_temporary(line: &[u8]) -> bool {
    response_code(line).is_some_and(|code| {
        code.eq_ignore_ascii_case(b"IN-USE")
            || code.eq_ignore_ascii_case(b"SYS/TEMP")
            || code
                .get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SYS/TEMP/"))
    })
}

/// Whose credentials Dovecot's `-ERR` to a master login refused, when its
/// reply says so (measured against Dovecot 2.3.19's pop3-login, master
/// passdb with `pass = yes`):
/// - `-ERR [AUTH] Authorization failed`: the master secret was right, the
///   user may not be logged into (unknown). The user's.
/// - `-ERR [AUTH] Authentication failed.`: a wrong master secret, **or** a
///   name outside `auth_username_chars`, byte for byte the same: `None`,
///   the caller asks once more ([`master_credentials_accepted`]).
/// - anything else (`[SYS/TEMP]`, `[IN-USE]`, ...): the upstream's trouble.
fn refusal(line: &[u8]) -> Option<Refusal> {
    let auth = response_code(line).is_some_and(|c| c.eq_ignore_ascii_case(b"AUTH"));
    let authorization = line
        .windows(b"Authorization failed".len())
        .any(|w| w.eq_ignore_ascii_case(b"Authorization failed"));
    match (auth, authorization) {
        (true, true) => Some(Refusal::User),
        (true, false) => None,
        (false, _) => Some(Refusal::Upstream),
    }
}

/// `XCLIENT ADDR=<ip> PORT=<port>` as Dovecot's pop3-login reads it (and
/// as Dovecot's own proxy sends it; IPv6 without brackets, an IPv4-mapped
/// address as IPv4).
fn xclient_command(client: ClientInfo) -> String {
    format!(
        "XCLIENT ADDR={} PORT={}",
        client.peer.ip().to_canonical(),
        client.peer.port()
    )
}

#[cfg(test)]
#[path = "pop3_tests.rs"]
mod tests;
