//! The IMAP pre-authentication state machine: greeting, CAPABILITY, NOOP,
//! ID, STARTTLS, LOGOUT, AUTHENTICATE and LOGIN; everything else is `BAD`.
//! A successful login ends in the relay.

use super::command::{self, Kind, ParseError};
use super::reply;
use super::wire::ImapWire;
use crate::client::{Client, Input};
use crate::config::TlsMode;
use crate::gateway::{Outcome, Service};
use crate::login::{self, After, Attempts};
use crate::upstream::LoggedIn;
use std::io;

/// What one command led to.
enum Next {
    Continue(Client),
    Done(Outcome),
    LoggedIn(Client, Box<LoggedIn>, Outcome),
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut st = Attempts::default();
    if !client.greeted
        && client
            .send(reply::greeting(svc, client.is_tls()).as_bytes())
            .await
            .is_err()
    {
        return st.end("closed");
    }
    loop {
        match command(client, svc, &mut st).await {
            Ok(Next::Continue(c)) => client = c,
            Ok(Next::Done(o)) => return o,
            Ok(Next::LoggedIn(mut c, up, o)) => return login::relay(&mut c, svc, *up, o).await,
            Err(e) => return st.end(crate::client::io_end(&e)),
        }
    }
}

/// Turns where an attempt left the connection into the session's next step.
fn after(st: &mut Attempts, after: After) -> Next {
    match after {
        After::Continue(c) => Next::Continue(c),
        After::LoggedIn(c, up) => Next::LoggedIn(c, up, std::mem::take(&mut st.outcome)),
        After::Done(result) => Next::Done(st.end(result)),
    }
}

async fn command(mut client: Client, svc: &Service, st: &mut Attempts) -> io::Result<Next> {
    let line = match client.read_line().await {
        Input::Line(l) => l,
        Input::TooLong => {
            client.send(b"* BAD Command line too long.\r\n").await?;
            return Ok(Next::Continue(client));
        }
        Input::Closed => return Ok(Next::Done(st.end("closed"))),
        Input::TimedOut => {
            client.send(reply::INACTIVE.as_bytes()).await?;
            return Ok(Next::Done(st.end("timeout")));
        }
    };
    let full = match with_literals(&mut client, line, svc.limits.max_line).await? {
        Assembled::Command(full) => full,
        Assembled::Refused => return Ok(Next::Continue(client)),
        Assembled::Gone => return Ok(Next::Done(st.end("closed"))),
        Assembled::TimedOut => {
            client.send(reply::INACTIVE.as_bytes()).await?;
            return Ok(Next::Done(st.end("timeout")));
        }
    };
    let cmd = match command::parse(&full) {
        Ok(c) => c,
        Err(ParseError::NoTag) => {
            client
                .send(b"* BAD Error in IMAP command received by server.\r\n")
                .await?;
            return Ok(Next::Continue(client));
        }
        Err(ParseError::Syntax { tag, message }) => {
            client
                .send(format!("{tag} BAD {message}\r\n").as_bytes())
                .await?;
            return Ok(Next::Continue(client));
        }
    };
    let tag = cmd.tag;
    match cmd.kind {
        Kind::Capability => {
            let caps = reply::capabilities(svc, &client);
            client
                .send(format!("* CAPABILITY {caps}\r\n{tag} OK Pre-login capabilities listed, post-login capabilities have more.\r\n").as_bytes())
                .await?;
        }
        Kind::Noop => {
            client
                .send(format!("{tag} OK NOOP completed.\r\n").as_bytes())
                .await?
        }
        Kind::Id => {
            client
                .send(
                    format!("* ID (\"name\" \"oauthbearer-proxy\")\r\n{tag} OK ID completed.\r\n")
                        .as_bytes(),
                )
                .await?
        }
        Kind::Logout => {
            client
                .send(format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n").as_bytes())
                .await?;
            return Ok(Next::Done(st.end("logout")));
        }
        Kind::StartTls => {
            let acceptor = match (&svc.tls, svc.listener.tls) {
                (Some(a), TlsMode::StartTls) if !client.is_tls() => a,
                _ => {
                    let why = if client.is_tls() {
                        "TLS is already active."
                    } else {
                        "STARTTLS is not offered here."
                    };
                    client
                        .send(format!("{tag} BAD {why}\r\n").as_bytes())
                        .await?;
                    return Ok(Next::Continue(client));
                }
            };
            client
                .send(format!("{tag} OK Begin TLS negotiation now.\r\n").as_bytes())
                .await?;
            return Ok(Next::Continue(client.start_tls(acceptor).await?));
        }
        Kind::Other(name) => {
            client
                .send(
                    format!("{tag} BAD Command {name} is unknown or not allowed before login.\r\n")
                        .as_bytes(),
                )
                .await?
        }
        Kind::Authenticate { mechanism, initial } => {
            let request = login::Request {
                mechanism: &mechanism,
                initial: initial.as_deref(),
                helo: None,
            };
            let wire = ImapWire { tag: &tag };
            let done = login::authenticate(&wire, client, svc, st, request).await?;
            return Ok(after(st, done));
        }
        Kind::Login { username, password } => {
            let wire = ImapWire { tag: &tag };
            let done = login::password(
                &wire,
                client,
                svc,
                st,
                "LOGIN",
                &username,
                password.expose(),
            )
            .await?;
            return Ok(after(st, done));
        }
    }
    Ok(Next::Continue(client))
}

enum Assembled {
    Command(Vec<u8>),
    /// A literal over the limit was refused; the client sent nothing more.
    Refused,
    /// The client went away (or must be disconnected).
    Gone,
    /// The pre-auth deadline passed inside a literal.
    TimedOut,
}

/// Reads the literals a command line announces and appends them inline
/// (`{n}\r\n<bytes>` followed by the rest of the command).
async fn with_literals(client: &mut Client, first: Vec<u8>, max: usize) -> io::Result<Assembled> {
    let mut full = first;
    let mut last_line_start = 0;
    while let Some((n, sync)) = command::trailing_literal(&full[last_line_start..]) {
        if full.len() + n > max {
            if sync {
                // The client waits for "+" and sends nothing; we refuse
                // the command with its tag (RFC 3501 §2.2.1).
                let tag = command::leading_tag(&full).unwrap_or("*");
                let bad = format!("{tag} BAD Literal too large.\r\n");
                client.send(bad.as_bytes()).await?;
                return Ok(Assembled::Refused);
            }
            // A non-synchronizing literal is already on its way: its bytes
            // cannot be told from commands, so the session ends.
            client.send(b"* BYE Literal too large.\r\n").await?;
            return Ok(Assembled::Gone);
        }
        if sync {
            client.send(b"+ Ready for literal data\r\n").await?;
        }
        let Some(data) = client.read_exact(n).await else {
            return Ok(if client.deadline_passed() {
                Assembled::TimedOut
            } else {
                Assembled::Gone
            });
        };
        full.extend_from_slice(b"\r\n");
        full.extend_from_slice(&data);
        last_line_start = full.len();
        match client.read_line().await {
            Input::Line(rest) => full.extend_from_slice(&rest),
            Input::TimedOut => return Ok(Assembled::TimedOut),
            _ => return Ok(Assembled::Gone),
        }
    }
    Ok(Assembled::Command(full))
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;
#[cfg(test)]
#[path = "password_tests.rs"]
mod password_tests;
#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
