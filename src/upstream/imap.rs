//! Logging in to an IMAP upstream (Dovecot).
//!
//! Sequence: `STARTTLS` after the greeting when configured, then in one
//! write `ID` with the client's real address (Dovecot honours it from
//! `login_trusted_networks`) and the login command: `AUTHENTICATE PLAIN` as
//! the master user with authzid = the user, or the client's own password
//! command (passthrough). Then the greeting (unless already read), the `ID`
//! answer and the login answer are read: one round trip instead of three.

use super::{printable, ClientInfo, Error, LoggedIn, Refusal, Target};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const MAX_LINE: usize = 64 * 1024;
const TAG: &[u8] = b"P1";
const ID_TAG: &[u8] = b"P0";

/// The upstream's answer to a login command.
pub enum Reply {
    Ok(LoggedIn),
    /// Refused: the untagged lines and the tagged text (e.g. `NO [AUTHENTICATIONFAILED] ...`).
    No {
        untagged: Vec<Vec<u8>>,
        tagged_text: Vec<u8>,
    },
}

/// A connected, not yet authenticated upstream session.
pub struct Session {
    stream: UpstreamStream,
    reader: LineReader,
    /// The greeting is read after the first commands were sent (not with
    /// STARTTLS, which needs it first).
    greeting_unread: bool,
    /// `ID` with the client's real address, sent in one write with the
    /// login command.
    id: Vec<u8>,
}

impl Session {
    /// Connects (and with `tls = "starttls"` reads the greeting and upgrades).
    /// Otherwise nothing is read yet: the greeting, the `ID` answer and the
    /// login answer are read after one write (IMAP allows pipelining, and
    /// Dovecot reads commands that arrive before its greeting after it).
    pub async fn open(target: &Target, client: ClientInfo) -> Result<Session, Error> {
        let stream = target.connect(Some(client)).await?;
        let id = format!(
            "ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\" \"x-connected-ip\" \"{}\" \"x-connected-port\" \"{}\")",
            client.peer.ip(),
            client.peer.port(),
            client.local.ip(),
            client.local.port()
        )
        .into_bytes();
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
            greeting_unread: true,
            id,
        };
        if target.config.tls == TlsMode::StartTls {
            s.read_greeting().await?;
            s.send(&[(TAG, b"STARTTLS")]).await?;
            let (_, text) = s.answer(TAG).await?;
            if !text.starts_with(b"OK") {
                return Err(Error::Tls(format!(
                    "STARTTLS refused: {}",
                    printable(&text)
                )));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
        }
        Ok(s)
    }

    async fn read_greeting(&mut self) -> Result<(), Error> {
        let greeting = self.read_line().await?;
        if !greeting.starts_with(b"* OK") {
            return Err(Error::Protocol(format!(
                "unexpected greeting: {}",
                printable(&greeting)
            )));
        }
        self.greeting_unread = false;
        Ok(())
    }

    /// Writes `<tag> <command>\r\n` for each pair, in one write.
    async fn send(&mut self, commands: &[(&[u8], &[u8])]) -> Result<(), Error> {
        let len = commands.iter().map(|(t, c)| t.len() + c.len() + 3).sum();
        let mut out = Vec::with_capacity(len);
        for (tag, command) in commands {
            out.extend_from_slice(tag);
            out.push(b' ');
            out.extend_from_slice(command);
            out.extend_from_slice(b"\r\n");
        }
        let written = self.stream.write_all(&out).await;
        // A command may carry the master secret or a password.
        zeroize::Zeroize::zeroize(&mut out);
        written.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)
    }

    /// Collects the answer to the command tagged `tag`: the untagged lines
    /// before it and the tagged text after the tag.
    async fn answer(&mut self, tag: &[u8]) -> Result<(Vec<Vec<u8>>, Vec<u8>), Error> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(b" ")) {
                return Ok((untagged, rest.to_vec()));
            }
            if line.starts_with(b"+") {
                // We only send complete commands; a continuation request
                // means the upstream wants something we cannot give.
                return Err(Error::Protocol("unexpected continuation request".into()));
            }
            if untagged.len() < 64 {
                untagged.push(line);
            }
        }
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

    /// Sends `ID` and a login command (without tag) in one write and
    /// returns the upstream's verdict on the login.
    pub async fn login(mut self, command: &[u8]) -> Result<Reply, Error> {
        let id = std::mem::take(&mut self.id);
        self.send(&[(ID_TAG, &id), (TAG, command)]).await?;
        if self.greeting_unread {
            self.read_greeting().await?;
        }
        // Dovecot answers OK whether or not it trusts us; nothing to check.
        self.answer(ID_TAG).await?;
        let (untagged, tagged_text) = self.answer(TAG).await?;
        if tagged_text.starts_with(b"OK") {
            let mut reply = untagged;
            reply.push(tagged_text);
            Ok(Reply::Ok(LoggedIn {
                buffered: self.reader.take_buffered(),
                stream: self.stream,
                reply,
            }))
        } else {
            Ok(Reply::No {
                untagged,
                tagged_text,
            })
        }
    }
}

/// The IMAP login strategy (Dovecot).
pub struct Login;

impl super::Strategy for Login {
    fn token_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: super::LoginContext<'a>,
        user: &'a str,
    ) -> super::BoxFuture<'a, Result<LoggedIn, Error>> {
        Box::pin(master_login(target, ctx.client, user))
    }

    fn password_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: super::LoginContext<'a>,
        password: super::Password<'a>,
    ) -> super::BoxFuture<'a, Result<super::PasswordReply, Error>> {
        Box::pin(password_login(target, ctx.client, password))
    }
}

/// Password passthrough: the client's credentials as `AUTHENTICATE PLAIN`
/// (after `ID` with its real address, so Dovecot applies its own failure
/// penalty to the client).
async fn password_login(
    target: &Target,
    client: ClientInfo,
    password: super::Password<'_>,
) -> Result<super::PasswordReply, Error> {
    let session = Session::open(target, client).await?;
    let command = Secret::new(format!(
        "AUTHENTICATE PLAIN {}",
        password.plain_base64().expose()
    ));
    match session.login(command.expose().as_bytes()).await? {
        Reply::Ok(logged_in) => Ok(super::PasswordReply::Accepted(logged_in)),
        Reply::No {
            mut untagged,
            tagged_text,
        } => {
            let temporary = contains(&tagged_text, b"[UNAVAILABLE]");
            untagged.push(tagged_text);
            Ok(super::PasswordReply::Refused {
                lines: untagged,
                temporary,
            })
        }
    }
}

/// Logs in as `user` with the master credentials (SASL PLAIN, authzid = user).
pub async fn master_login(
    target: &Target,
    client: ClientInfo,
    user: &str,
) -> Result<LoggedIn, Error> {
    let UpstreamLogin::MasterUser { username, secret } = &target.config.login else {
        return Err(Error::Protocol(
            "IMAP upstreams log in with login.method = \"master-user\"".into(),
        ));
    };
    let session = Session::open(target, client).await?;
    // Every intermediate copy of the master secret is a Secret: zeroized on drop.
    let plain = Secret::new(format!("{user}\0{username}\0{}", secret.expose()));
    let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
    let command = Secret::new(format!("AUTHENTICATE PLAIN {}", encoded.expose()));
    let tagged_text = match session.login(command.expose().as_bytes()).await? {
        Reply::Ok(logged_in) => {
            target.master_proof.record(true);
            return Ok(logged_in);
        }
        Reply::No { tagged_text, .. } => tagged_text,
    };
    let reply = printable(&tagged_text);
    let probe = master_credentials_accepted(target, client, username, secret);
    let by = target
        .master_proof
        .settle(refusal(&tagged_text), probe)
        .await?;
    Err(Error::Refused { reply, by })
}

/// What the master credentials last proved to be, for telling Dovecot's
/// ambiguous refusals apart without a probe each time: accepted when a
/// master login got past the secret (OK, `[AUTHORIZATIONFAILED]`), or as
/// the probe found. Trusted for [`MasterProof::TTL`], so that a secret
/// changed at Dovecot is noticed within it.
#[derive(Default)]
pub struct MasterProof(std::sync::Mutex<Option<(Instant, bool)>>);

impl MasterProof {
    pub const TTL: Duration = Duration::from_secs(30);

    pub fn record(&self, accepted: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), accepted));
    }

    /// Whose credentials a refused master login was refused for: `known`
    /// when the reply said so (the user's proves the secret good), else
    /// what the recent proof or, without one, `probe` says.
    pub async fn settle(
        &self,
        known: Option<Refusal>,
        probe: impl std::future::Future<Output = Result<bool, Error>>,
    ) -> Result<Refusal, Error> {
        let accepted = match known {
            Some(Refusal::User) => {
                self.record(true);
                return Ok(Refusal::User);
            }
            Some(by) => return Ok(by),
            None => match self.recent() {
                Some(known) => known,
                None => probe.await?,
            },
        };
        Ok(if accepted {
            Refusal::User
        } else {
            Refusal::Proxy
        })
    }

    pub fn recent(&self) -> Option<bool> {
        let proof = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        proof
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, accepted)| accepted)
    }
}

/// A user name every Dovecot accepts (`auth_username_chars` always has the
/// letters) and no site has: the probe in [`master_credentials_accepted`].
const PROBE_USER: &str = "oauthbearerproxyprobe";

/// Whose credentials Dovecot's `NO` to a master login refused, when its
/// reply says so. Measured against Dovecot 2.3.19 (tests/peers), master
/// passdb with `pass = yes`:
/// - `NO [AUTHORIZATIONFAILED] Authorization failed`: the master secret was
///   right, the user may not be logged into: an unknown user, or a name
///   over-long for the user passdb. The user's.
/// - `NO [AUTHENTICATIONFAILED] Authentication failed.`: a wrong master
///   secret, **or** a user name with a character outside
///   `auth_username_chars` (space, `+`, `/`, `%`, quote, non-ASCII, ...).
///   The two replies are identical byte for byte (only Dovecot's log tells
///   them apart), so `None`: the caller asks once more (see
///   [`master_credentials_accepted`]).
/// - anything else (`[UNAVAILABLE]`, `[SERVERBUG]`, ...): Dovecot's own
///   trouble, a temporary failure.
pub fn refusal(tagged_text: &[u8]) -> Option<Refusal> {
    if contains(tagged_text, b"[AUTHORIZATIONFAILED]") {
        Some(Refusal::User)
    } else if contains(tagged_text, b"[AUTHENTICATIONFAILED]") {
        None
    } else {
        Some(Refusal::Upstream)
    }
}

/// After an ambiguous `[AUTHENTICATIONFAILED]`: logs in with the same
/// master credentials as [`PROBE_USER`], a name Dovecot cannot refuse for
/// its characters. `[AUTHENTICATIONFAILED]` again means the master secret
/// is wrong (the proxy's misconfiguration, a temporary failure with a loud
/// log); anything that gets past the secret (`[AUTHORIZATIONFAILED]`, or
/// OK should such a user exist) means Dovecot refused the user's name: an
/// authentication failure for the client, counted. Guessing either way
/// would be worse: a wrong secret reported as bad credentials sends every
/// client to its login dialog and hides the outage, a refused name
/// reported as temporary makes the client retry forever. An error here
/// (no answer, a timeout) stays a temporary failure.
async fn master_credentials_accepted(
    target: &Target,
    client: ClientInfo,
    username: &str,
    secret: &Secret,
) -> Result<bool, Error> {
    let session = Session::open(target, client).await?;
    let plain = Secret::new(format!("{PROBE_USER}\0{username}\0{}", secret.expose()));
    let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
    let command = Secret::new(format!("AUTHENTICATE PLAIN {}", encoded.expose()));
    let accepted = match session.login(command.expose().as_bytes()).await? {
        // Logged in as the probe user: the session is dropped, closed.
        Reply::Ok(_) => true,
        Reply::No { tagged_text, .. } => match refusal(&tagged_text) {
            Some(Refusal::User) => true,
            None => false,
            Some(_) => {
                return Err(Error::Protocol(format!(
                    "master login probe: {}",
                    printable(&tagged_text)
                )))
            }
        },
    };
    target.master_proof.record(accepted);
    Ok(accepted)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An IMAP astring for `value`: a quoted string when it is printable
/// ASCII, otherwise a non-synchronizing literal (LITERAL+, which Dovecot
/// offers before login).
pub fn astring(value: &[u8]) -> Vec<u8> {
    if value.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        let mut out = Vec::with_capacity(value.len() + 2);
        out.push(b'"');
        for &b in value {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}+}}\r\n", value.len()).into_bytes();
        out.extend_from_slice(value);
        out
    }
}

#[cfg(test)]
#[path = "imap_tests.rs"]
mod tests;
