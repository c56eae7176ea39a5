//! The SMTP pre-authentication state machine: banner, EHLO/HELO,
//! STARTTLS, AUTH (bearer mechanisms, and PLAIN/LOGIN relayed to the
//! upstream with password passthrough), NOOP, RSET, HELP, QUIT; mail
//! transaction commands get `530`. A successful AUTH ends in the relay.

use super::command::{self, Command};
use super::reply::{self, Offer};
use super::wire::SmtpWire;
use crate::client::{Client, Input};
use crate::config::TlsMode;
use crate::gateway::{Outcome, Service};
use crate::login::{self, After, Attempts};
use crate::upstream::{self, LoggedIn};
use std::io;

/// What one command led to.
enum Next {
    Continue(Client),
    Done(Outcome),
    /// Boxed: the upstream session is large and this variant is rare.
    LoggedIn(Client, Box<LoggedIn>, Outcome),
}

/// What the session remembers between commands.
#[derive(Default)]
struct State {
    /// The client's EHLO name; `None` before EHLO, after HELO (no ESMTP,
    /// so no AUTH) and after STARTTLS (RFC 3207 §4.2: start over).
    ehlo: Option<String>,
    attempts: Attempts,
}

impl State {
    fn done(&mut self, result: &'static str) -> Next {
        Next::Done(self.attempts.end(result))
    }
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut st = State::default();
    if !client.greeted && client.send(reply::banner(svc).as_bytes()).await.is_err() {
        return st.attempts.end("closed");
    }
    loop {
        match command(client, svc, &mut st).await {
            Ok(Next::Continue(c)) => client = c,
            Ok(Next::Done(o)) => return o,
            Ok(Next::LoggedIn(mut c, up, o)) => return login::relay(&mut c, svc, *up, o).await,
            Err(e) => return st.attempts.end(crate::client::io_end(&e)),
        }
    }
}

async fn command(mut client: Client, svc: &Service, st: &mut State) -> io::Result<Next> {
    let line = match client.read_line().await {
        Input::Line(l) => l,
        Input::TooLong => {
            client.send(reply::LINE_TOO_LONG.as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
        Input::Closed => return Ok(st.done("closed")),
        Input::TimedOut => {
            client.send(reply::timeout(svc).as_bytes()).await?;
            return Ok(st.done("timeout"));
        }
    };
    let cmd = match command::parse(&line) {
        Ok(c) => c,
        Err(e) => {
            client
                .send(format!("501 {} {}\r\n", e.code, e.text).as_bytes())
                .await?;
            return Ok(Next::Continue(client));
        }
    };
    match cmd {
        Command::Ehlo(name) => {
            let keywords = upstream::smtp::extensions(svc.upstream.any(), &svc.hostname).await;
            let text = reply::ehlo(&svc.hostname, &keywords, offer(svc, &client));
            client.send(text.as_bytes()).await?;
            st.ehlo = Some(name);
        }
        Command::Helo(_) => {
            client.send(reply::helo(svc).as_bytes()).await?;
            st.ehlo = None;
        }
        Command::StartTls => return starttls(client, svc, st).await,
        Command::Auth { mechanism, initial } => {
            return auth(client, svc, st, &mechanism, initial.as_deref()).await
        }
        Command::Noop | Command::Rset => client.send(reply::OK.as_bytes()).await?,
        Command::Help => client.send(reply::HELP.as_bytes()).await?,
        Command::Quit => {
            client.send(reply::BYE.as_bytes()).await?;
            return Ok(st.done("quit"));
        }
        Command::NeedsAuth(_) => client.send(reply::AUTH_REQUIRED.as_bytes()).await?,
        Command::Unknown(verb) => {
            tracing::debug!(client = %client.peer, verb, "unknown command before AUTH");
            client.send(reply::UNKNOWN_COMMAND.as_bytes()).await?
        }
    }
    Ok(Next::Continue(client))
}

/// What this connection is offered besides the upstream's keywords.
fn offer(svc: &Service, client: &Client) -> Offer {
    let auth = login::auth_allowed(svc, client.is_tls());
    Offer {
        auth,
        passwords: auth && svc.listener.accepts_passwords(),
        starttls: svc.listener.tls == TlsMode::StartTls && svc.tls.is_some() && !client.is_tls(),
    }
}

async fn starttls(mut client: Client, svc: &Service, st: &mut State) -> io::Result<Next> {
    let acceptor = match (&svc.tls, svc.listener.tls) {
        (Some(a), TlsMode::StartTls) if !client.is_tls() => a,
        _ => {
            let text = if client.is_tls() {
                reply::TLS_ACTIVE
            } else {
                reply::NO_STARTTLS
            };
            client.send(text.as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
    };
    client.send(reply::READY_FOR_TLS.as_bytes()).await?;
    st.ehlo = None;
    // Client::start_tls discards plaintext pipelined behind STARTTLS.
    Ok(Next::Continue(client.start_tls(acceptor).await?))
}

/// AUTH: EHLO must come first (the upstream login passes its name on);
/// the rest of the attempt is the shared login path's.
async fn auth(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    mechanism: &str,
    initial: Option<&[u8]>,
) -> io::Result<Next> {
    let Some(helo) = st.ehlo.clone() else {
        client.send(reply::EHLO_FIRST.as_bytes()).await?;
        return Ok(Next::Continue(client));
    };
    let request = login::Request {
        mechanism,
        initial,
        helo: Some(&helo),
    };
    let wire = SmtpWire { svc };
    Ok(
        match login::authenticate(&wire, client, svc, &mut st.attempts, request).await? {
            After::Continue(c) => Next::Continue(c),
            After::LoggedIn(c, up) => {
                Next::LoggedIn(c, up, std::mem::take(&mut st.attempts.outcome))
            }
            After::Done(result) => st.done(result),
        },
    )
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
