//! Logging in to an SMTP upstream (Postfix).
//!
//! Sequence: greeting, EHLO, STARTTLS + EHLO when configured, then either
//! `XCLIENT LOGIN= ADDR= PORT= HELO= PROTO=ESMTP` (Postfix answers with a
//! new greeting) followed by EHLO with the client's name, or `AUTH PLAIN`
//! as a master user with authzid = the user.
//!
//! Password passthrough ([`password_login`]) uses the same session but sends
//! XCLIENT without `LOGIN=` and then the client's own `AUTH PLAIN`.
//!
//! [`ExtensionCache`] keeps the upstream's EHLO keywords, learned from one
//! connection of our own and refreshed in the background, so the front-end
//! can promise exactly what the upstream offers without contacting it for
//! every unauthenticated client.

use super::{ClientInfo, Error, LoggedIn, Refusal, Target};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub use super::smtp_extensions::{
    extensions, ExtensionCache, DEFAULT_EXTENSIONS, EXTENSIONS_REFRESH,
};

const MAX_LINE: usize = 8 * 1024;
const MAX_REPLY_LINES: usize = 64;
/// How long one upstream reply may take (a stuck upstream must not hold a
/// client's login forever).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One SMTP reply: the code and the text of each line.
#[derive(Debug)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// One line for logs and error messages.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }

    /// The reply as it goes on the wire (`code-line` … `code line`, no
    /// CRLF), control characters dropped: it is relayed to a client.
    pub fn wire_lines(&self) -> Vec<Vec<u8>> {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            return vec![self.code.to_string().into_bytes()];
        }
        self.lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let sep = if i == last { ' ' } else { '-' };
                let text: String = line.chars().filter(|c| !c.is_control()).collect();
                format!("{}{sep}{text}", self.code).into_bytes()
            })
            .collect()
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
        client: Option<ClientInfo>,
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
        let written = self.stream.write_all(&out).await;
        // The command may carry the master secret or a password.
        zeroize::Zeroize::zeroize(&mut out);
        written.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<SmtpReply, Error> {
        let mut lines = Vec::new();
        loop {
            let read = self.reader.read_line(&mut self.stream);
            let line = match tokio::time::timeout(REPLY_TIMEOUT, read)
                .await
                .map_err(|_| Error::Protocol("upstream reply timed out".into()))?
                .map_err(Error::io)?
            {
                Line::Data(l) => l,
                Line::TooLong => {
                    return Err(Error::Protocol("over-long reply line from upstream".into()))
                }
                Line::Eof => return Err(Error::Protocol("upstream closed the connection".into())),
            };
            let (code, more, text) = parse_reply_line(&line).ok_or_else(|| {
                Error::Protocol(format!("malformed reply: {}", super::printable(&line)))
            })?;
            if lines.len() < MAX_REPLY_LINES {
                lines.push(text);
            }
            if !more {
                return Ok(SmtpReply { code, lines });
            }
        }
    }

    /// Ends the session politely (best effort, bounded).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command(b"QUIT")).await;
    }

    /// XCLIENT with the client's address and EHLO name (and `LOGIN=` when
    /// given), then EHLO again as the client, as Postfix requires.
    async fn xclient(
        &mut self,
        client: ClientInfo,
        helo: &str,
        login: Option<&str>,
    ) -> Result<(), Error> {
        let r = self
            .command(xclient_command(client, helo, login).as_bytes())
            .await?;
        let refused = |by| Error::Refused {
            reply: r.text(),
            by,
        };
        match (r.code, login) {
            (220, _) => {}
            // Postfix 3.7: `501 5.5.4 Error: attribute value too long` for a
            // LOGIN= over 255 characters (xtext-encoded): the user name from
            // the token (or the client's own HELO name) is not one it accepts.
            // Any other LOGIN= it takes without a check.
            (501, Some(_)) => return Err(refused(Refusal::User)),
            // `550 5.7.0 Error: insufficient authorization`: the proxy's
            // address is not in smtpd_authorized_xclient_hosts.
            (550, _) => return Err(refused(Refusal::Proxy)),
            _ => return Err(Error::Protocol(format!("XCLIENT failed: {}", r.text()))),
        }
        self.ehlo(helo).await
    }

    /// The logged-in session; `reply` is what the client is to see (none
    /// after XCLIENT: the front-end answers itself).
    fn into_logged_in(mut self, reply: Vec<Vec<u8>>) -> LoggedIn {
        LoggedIn {
            buffered: self.reader.take_buffered(),
            stream: self.stream,
            reply,
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

/// `XCLIENT [LOGIN=] ADDR= PORT= HELO= PROTO=ESMTP`, values xtext-encoded.
pub fn xclient_command(client: ClientInfo, helo: &str, login: Option<&str>) -> String {
    let addr = match client.peer.ip() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPV6:{v6}"),
        },
    };
    let login = login
        .map(|user| format!("LOGIN={} ", xtext(user)))
        .unwrap_or_default();
    format!(
        "XCLIENT {login}ADDR={} PORT={} HELO={} PROTO=ESMTP",
        xtext(&addr),
        client.peer.port(),
        xtext(helo)
    )
}

/// Logs in to the upstream as `user` for a client that said `EHLO helo`.
pub async fn login(
    target: &Target,
    client: ClientInfo,
    user: &str,
    helo: &str,
) -> Result<LoggedIn, Error> {
    let mut s = Session::open(target, Some(client), &own_name(client)).await?;
    match &target.config.login {
        UpstreamLogin::Xclient => {
            if !s.has_extension("XCLIENT") {
                return Err(Error::Protocol(
                    "upstream does not offer XCLIENT to the proxy (Postfix: smtpd_authorized_xclient_hosts)".into(),
                ));
            }
            s.xclient(client, helo, Some(user)).await?;
        }
        UpstreamLogin::MasterUser { username, secret } => {
            let plain = Secret::new(format!("{user}\0{username}\0{}", secret.expose()));
            let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
            let cmd = Secret::new(format!("AUTH PLAIN {}", encoded.expose()));
            let r = s.command(cmd.expose().as_bytes()).await?;
            match r.code {
                235 => {}
                // Not told apart from a wrong master secret (a 535 either
                // way); the user's, as before.
                535 => {
                    return Err(Error::Refused {
                        reply: r.text(),
                        by: Refusal::User,
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
    Ok(s.into_logged_in(Vec::new()))
}

/// The SMTP login strategy (Postfix: XCLIENT, or AUTH PLAIN as a master user).
pub struct Login;

impl super::Strategy for Login {
    fn token_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: super::LoginContext<'a>,
        user: &'a str,
    ) -> super::BoxFuture<'a, Result<LoggedIn, Error>> {
        Box::pin(login(target, ctx.client, user, ctx.helo.unwrap_or("")))
    }

    fn password_login<'a>(
        &'a self,
        target: &'a Target,
        ctx: super::LoginContext<'a>,
        password: super::Password<'a>,
    ) -> super::BoxFuture<'a, Result<super::PasswordReply, Error>> {
        Box::pin(password_login(
            target,
            ctx.client,
            ctx.helo.unwrap_or(""),
            password,
        ))
    }
}

/// Password passthrough: XCLIENT without `LOGIN=` (so the upstream applies
/// its policies to the real client), EHLO as the client, then the client's
/// credentials as `AUTH PLAIN`. A 4xx refusal is the upstream's temporary
/// trouble, a 5xx the client's.
async fn password_login(
    target: &Target,
    client: ClientInfo,
    helo: &str,
    password: super::Password<'_>,
) -> Result<super::PasswordReply, Error> {
    let mut s = Session::open(target, Some(client), &own_name(client)).await?;
    if s.has_extension("XCLIENT") {
        s.xclient(client, helo, None).await?;
    }
    if !s.has_extension("AUTH") {
        return Err(Error::Protocol(
            "upstream does not offer AUTH (Postfix: smtpd_sasl_auth_enable)".into(),
        ));
    }
    let cmd = Secret::new(format!("AUTH PLAIN {}", password.plain_base64().expose()));
    let r = s.command(cmd.expose().as_bytes()).await?;
    match r.code {
        235 => {
            let lines = r.wire_lines();
            Ok(super::PasswordReply::Accepted(s.into_logged_in(lines)))
        }
        400..=599 => Ok(super::PasswordReply::Refused {
            lines: r.wire_lines(),
            temporary: r.code < 500,
        }),
        _ => Err(Error::Protocol(format!(
            "unexpected reply to AUTH PLAIN: {}",
            r.text()
        ))),
    }
}

/// The name the proxy itself uses in EHLO: its address literal.
fn own_name(client: ClientInfo) -> String {
    match client.local.ip() {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

#[cfg(test)]
#[path = "smtp_tests.rs"]
mod tests;
