//! Logging in to an SMTP upstream (Postfix).
//!
//! Sequence: greeting, EHLO, STARTTLS + EHLO when configured, then either
//! `XCLIENT LOGIN= ADDR= PORT= HELO= PROTO=ESMTP` (Postfix answers with a
//! new greeting) followed by EHLO with the client's name, or `AUTH PLAIN`
//! as a master user with authzid = the user.

use super::{ClientInfo, Error, LoggedIn, Target};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use tokio::io::AsyncWriteExt;

const MAX_LINE: usize = 8 * 1024;
const MAX_REPLY_LINES: usize = 64;

/// One SMTP reply: the code and the text of each line.
#[derive(Debug)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }
}

/// A connected upstream SMTP session that has said EHLO.
pub struct Session {
    stream: UpstreamStream,
    reader: LineReader,
    /// The extension keywords of the last EHLO reply (first line excluded).
    pub extensions: Vec<String>,
}

impl Session {
    /// Connects, reads the greeting, EHLOs as `ehlo_name`, and upgrades
    /// with STARTTLS when the upstream is configured for it.
    pub async fn open(
        target: &Target,
        client: ClientInfo,
        ehlo_name: &str,
    ) -> Result<Session, Error> {
        let stream = target.connect(client).await?;
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
            extensions: Vec::new(),
        };
        let greeting = s.read_reply().await?;
        if greeting.code != 220 {
            return Err(Error::Protocol(format!(
                "unexpected greeting: {}",
                greeting.text()
            )));
        }
        s.ehlo(ehlo_name).await?;
        if target.config.tls == TlsMode::StartTls {
            let r = s.command(b"STARTTLS").await?;
            if r.code != 220 {
                return Err(Error::Tls(format!("STARTTLS refused: {}", r.text())));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
            s.ehlo(ehlo_name).await?;
        }
        Ok(s)
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), Error> {
        let r = self.command(format!("EHLO {name}").as_bytes()).await?;
        if r.code != 250 {
            return Err(Error::Protocol(format!("EHLO refused: {}", r.text())));
        }
        self.extensions = r.lines.into_iter().skip(1).collect();
        Ok(())
    }

    pub fn has_extension(&self, keyword: &str) -> bool {
        self.extensions.iter().any(|e| {
            e.split(' ')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }

    pub async fn command(&mut self, line: &[u8]) -> Result<SmtpReply, Error> {
        let mut out = Vec::with_capacity(line.len() + 2);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out).await.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<SmtpReply, Error> {
        let mut lines = Vec::new();
        loop {
            let line = match self
                .reader
                .read_line(&mut self.stream)
                .await
                .map_err(Error::io)?
            {
                Line::Data(l) => l,
                Line::TooLong => {
                    return Err(Error::Protocol("over-long reply line from upstream".into()))
                }
                Line::Eof => return Err(Error::Protocol("upstream closed the connection".into())),
            };
            let (code, more, text) = parse_reply_line(&line).ok_or_else(|| {
                Error::Protocol(format!(
                    "malformed reply: {}",
                    super::imap::printable(&line)
                ))
            })?;
            if lines.len() < MAX_REPLY_LINES {
                lines.push(text);
            }
            if !more {
                return Ok(SmtpReply { code, lines });
            }
        }
    }

    fn into_logged_in(mut self) -> LoggedIn {
        LoggedIn {
            buffered: self.reader.take_buffered(),
            stream: self.stream,
            untagged: Vec::new(),
            tagged_text: Vec::new(),
        }
    }
}

/// `250-text` / `250 text` / `250` → (code, more lines follow, text).
pub fn parse_reply_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let code = std::str::from_utf8(line.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    let (more, text) = match line.get(3) {
        None => (false, &[][..]),
        Some(b'-') => (true, &line[4..]),
        Some(b' ') => (false, &line[4..]),
        Some(_) => return None,
    };
    Some((code, more, String::from_utf8_lossy(text).into_owned()))
}

/// xtext (RFC 3461 §4): `!`..`~` except `+` and `=` as is, others `+HH`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Logs in to the upstream as `user` for a client that said `EHLO helo`.
pub async fn login(
    target: &Target,
    client: ClientInfo,
    user: &str,
    helo: &str,
) -> Result<LoggedIn, Error> {
    let own_name = format!("[{}]", client.local.ip());
    let mut s = Session::open(target, client, &own_name).await?;
    match &target.config.login {
        UpstreamLogin::Xclient => {
            if !s.has_extension("XCLIENT") {
                return Err(Error::Protocol(
                    "upstream does not offer XCLIENT to the proxy (Postfix: smtpd_authorized_xclient_hosts)".into(),
                ));
            }
            let addr = match client.peer.ip() {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("IPV6:{v6}"),
            };
            let cmd = format!(
                "XCLIENT LOGIN={} ADDR={} PORT={} HELO={} PROTO=ESMTP",
                xtext(user),
                xtext(&addr),
                client.peer.port(),
                xtext(helo)
            );
            let r = s.command(cmd.as_bytes()).await?;
            match r.code {
                220 => {}
                550 | 535 => {
                    return Err(Error::Refused {
                        reply: r.text(),
                        authorization: true,
                    })
                }
                _ => return Err(Error::Protocol(format!("XCLIENT failed: {}", r.text()))),
            }
            s.ehlo(helo).await?;
        }
        UpstreamLogin::MasterUser { username, secret } => {
            let cmd = Secret::new(format!(
                "AUTH PLAIN {}",
                sasl::encode(format!("{user}\0{username}\0{}", secret.expose()).as_bytes())
            ));
            let r = s.command(cmd.expose().as_bytes()).await?;
            match r.code {
                235 => {}
                535 => {
                    return Err(Error::Refused {
                        reply: r.text(),
                        authorization: true,
                    })
                }
                _ => {
                    return Err(Error::Protocol(format!(
                        "master login failed: {}",
                        r.text()
                    )))
                }
            }
        }
    }
    Ok(s.into_logged_in())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("alice@example.com"), "alice@example.com");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line(b"250-PIPELINING"),
            Some((250, true, "PIPELINING".into()))
        );
        assert_eq!(parse_reply_line(b"250 OK"), Some((250, false, "OK".into())));
        assert_eq!(parse_reply_line(b"220"), Some((220, false, String::new())));
        assert_eq!(parse_reply_line(b"25"), None);
        assert_eq!(parse_reply_line(b"abc def"), None);
        assert_eq!(parse_reply_line(b"250x"), None);
    }
}
