//! Logging in to an IMAP upstream (Dovecot).
//!
//! Sequence: greeting, `STARTTLS` when configured, `ID` with the client's
//! real address (Dovecot honours it from `login_trusted_networks`), then
//! the login command: `AUTHENTICATE PLAIN` as the master user with
//! authzid = the user, or the client's own password command (passthrough).

use super::{ClientInfo, Error, LoggedIn, Target};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use tokio::io::AsyncWriteExt;

const MAX_LINE: usize = 64 * 1024;
const TAG: &[u8] = b"P1";

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
}

impl Session {
    pub async fn open(target: &Target, client: ClientInfo) -> Result<Session, Error> {
        let stream = target.connect(Some(client)).await?;
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
        };
        let greeting = s.read_line().await?;
        if !greeting.starts_with(b"* OK") {
            return Err(Error::Protocol(format!(
                "unexpected greeting: {}",
                printable(&greeting)
            )));
        }
        if target.config.tls == TlsMode::StartTls {
            let (_, text) = s.command(b"STARTTLS").await?;
            if !text.starts_with(b"OK") {
                return Err(Error::Tls(format!(
                    "STARTTLS refused: {}",
                    printable(&text)
                )));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
        }
        let id = format!(
            "ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\" \"x-connected-ip\" \"{}\" \"x-connected-port\" \"{}\")",
            client.peer.ip(),
            client.peer.port(),
            client.local.ip(),
            client.local.port()
        );
        // Dovecot answers OK whether or not it trusts us; nothing to check.
        s.command(id.as_bytes()).await?;
        Ok(s)
    }

    /// Sends `P1 <command>` and collects the answer up to the tagged line.
    /// Returns the untagged lines and the tagged text after the tag.
    async fn command(&mut self, command: &[u8]) -> Result<(Vec<Vec<u8>>, Vec<u8>), Error> {
        let mut out = Vec::with_capacity(command.len() + 8);
        out.extend_from_slice(TAG);
        out.push(b' ');
        out.extend_from_slice(command);
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)?;
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if let Some(rest) = line.strip_prefix(TAG).and_then(|r| r.strip_prefix(b" ")) {
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

    /// Sends a login command (without tag) and returns the upstream's verdict.
    pub async fn login(mut self, command: &[u8]) -> Result<Reply, Error> {
        let (untagged, tagged_text) = self.command(command).await?;
        if tagged_text.starts_with(b"OK") {
            Ok(Reply::Ok(LoggedIn {
                buffered: self.reader.take_buffered(),
                stream: self.stream,
                untagged,
                tagged_text,
            }))
        } else {
            Ok(Reply::No {
                untagged,
                tagged_text,
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
    let command = Secret::new(format!(
        "AUTHENTICATE PLAIN {}",
        sasl::encode(format!("{user}\0{username}\0{}", secret.expose()).as_bytes())
    ));
    match session.login(command.expose().as_bytes()).await? {
        Reply::Ok(logged_in) => Ok(logged_in),
        Reply::No { tagged_text, .. } => Err(Error::Refused {
            authorization: contains(&tagged_text, b"[AUTHORIZATIONFAILED]"),
            reply: printable(&tagged_text),
        }),
    }
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

/// Upstream text made safe for a log line.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(200)
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn astrings() {
        assert_eq!(astring(b"alice"), b"\"alice\"".to_vec());
        assert_eq!(astring(b"a\"b\\c"), b"\"a\\\"b\\\\c\"".to_vec());
        assert_eq!(
            astring("pässword".as_bytes()),
            b"{9+}\r\np\xc3\xa4ssword".to_vec()
        );
    }
}
