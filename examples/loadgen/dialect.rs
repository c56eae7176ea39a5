//! The login dialogue in each protocol the load generator speaks: IMAP
//! (`a AUTHENTICATE MECH <ir>`, tagged replies), POP3 (`AUTH MECH <ir>`
//! after the `+OK` greeting, RFC 5034) and ManageSieve (`AUTHENTICATE
//! "MECH" "<ir>"` after the capability greeting, RFC 5804).

use super::Conn;
use clap::ValueEnum;
use std::io;

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Protocol {
    Imap,
    Pop3,
    Managesieve,
}

impl Protocol {
    /// The authentication command for `mech` with the base64 initial
    /// response `ir`.
    pub fn auth_line(self, mech: &str, ir: &str) -> String {
        match self {
            Protocol::Imap => format!("a AUTHENTICATE {mech} {ir}\r\n"),
            Protocol::Pop3 => format!("AUTH {mech} {ir}\r\n"),
            Protocol::Managesieve => format!("AUTHENTICATE \"{mech}\" \"{ir}\"\r\n"),
        }
    }

    fn noop(self) -> &'static [u8] {
        match self {
            Protocol::Imap => b"b NOOP\r\n",
            Protocol::Pop3 | Protocol::Managesieve => b"NOOP\r\n",
        }
    }

    fn logout(self) -> &'static [u8] {
        match self {
            Protocol::Imap => b"z LOGOUT\r\n",
            Protocol::Pop3 => b"QUIT\r\n",
            Protocol::Managesieve => b"LOGOUT\r\n",
        }
    }
}

/// What one reply line is, in a protocol without tags.
enum Line {
    Ok,
    Refused,
    /// A SASL challenge (the login is cancelled).
    Challenge,
    /// Anything else (a ManageSieve capability line, an IMAP untagged one).
    Other,
}

fn classify(p: Protocol, line: &[u8]) -> Line {
    match p {
        Protocol::Pop3 if line.starts_with(b"+OK") => Line::Ok,
        Protocol::Pop3 if line.starts_with(b"-ERR") => Line::Refused,
        Protocol::Pop3 if line.starts_with(b"+") => Line::Challenge,
        Protocol::Managesieve if line.starts_with(b"OK") => Line::Ok,
        Protocol::Managesieve if line.starts_with(b"NO") || line.starts_with(b"BYE") => {
            Line::Refused
        }
        _ => Line::Other,
    }
}

impl Conn {
    /// Reads up to the reply that ends a command (for IMAP the one tagged
    /// `tag`): whether it was `OK`. A challenge is answered by cancelling.
    async fn reply(&mut self, p: Protocol, tag: &[u8], in_sasl: bool) -> io::Result<bool> {
        if p == Protocol::Imap {
            return self.tagged(tag, b"*\r\n").await;
        }
        loop {
            let (a, b) = self.line().await?;
            let kind = classify(p, &self.buf[a..b]);
            let sieve_challenge = p == Protocol::Managesieve
                && in_sasl
                && matches!(self.buf.get(a), Some(b'"') | Some(b'{'));
            match kind {
                Line::Ok => return Ok(true),
                Line::Refused => {
                    let text = String::from_utf8_lossy(&self.buf[a..b]);
                    eprintln!("loadgen: {}", text.chars().take(200).collect::<String>());
                    return Ok(false);
                }
                Line::Challenge => self.send(b"*\r\n").await?,
                Line::Other if sieve_challenge => self.send(b"\"*\"\r\n").await?,
                Line::Other => {}
            }
            if let Some(n) = super::literal(&self.buf[a..b]) {
                self.skip(n).await?;
            }
        }
    }

    /// The greeting (ManageSieve: the capability lines up to `OK`).
    pub async fn greeting(&mut self, p: Protocol) -> io::Result<()> {
        let ok = match p {
            Protocol::Imap => {
                let (a, b) = self.line().await?;
                self.buf[a..b].starts_with(b"* OK")
            }
            _ => self.reply(p, b"", false).await?,
        };
        if ok {
            Ok(())
        } else {
            Err(io::Error::other("no greeting"))
        }
    }

    /// The login command, then a `NOOP`.
    pub async fn authenticate(&mut self, p: Protocol, auth_line: &[u8]) -> io::Result<()> {
        self.send(auth_line).await?;
        if !self.reply(p, b"a", true).await? {
            return Err(io::Error::other("login refused"));
        }
        self.send(p.noop()).await?;
        if !self.reply(p, b"b", false).await? {
            return Err(io::Error::other("NOOP failed"));
        }
        Ok(())
    }

    /// LOGOUT / QUIT and its reply.
    pub async fn say_goodbye(&mut self, p: Protocol) -> io::Result<()> {
        self.send(p.logout()).await?;
        self.reply(p, b"z", false).await?;
        Ok(())
    }
}
