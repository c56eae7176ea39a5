//! The ManageSieve pre-authentication state machine (RFC 5804): the
//! capability greeting, CAPABILITY, NOOP, STARTTLS (capabilities re-sent
//! under TLS, §2.2), LOGOUT and AUTHENTICATE, which the shared login path
//! ([`crate::login`]) carries out; every other command is answered `NO`.
//! A successful login ends in the relay.

use super::command::{self, Command};
use super::read::{self, Read};
use super::reply;
use super::wire::SieveWire;
use crate::client::Client;
use crate::config::TlsMode;
use crate::gateway::{Outcome, Service};
use crate::login::{self, After, Attempts, Request};
use crate::upstream::{managesieve as upstream, LoggedIn};
use std::io;

/// What one command led to.
enum Next {
    Continue(Client),
    Done(Outcome),
    LoggedIn(Client, Box<LoggedIn>, Outcome),
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut st = Attempts::default();
    if !client.greeted {
        // The first client of an upstream waits for its capabilities to
        // be learned (bounded by its connect-timeout); later ones do not.
        let sieve = upstream::learned_capabilities(svc.upstream.any()).await;
        let greeting = reply::greeting(svc, client.is_tls(), &sieve);
        if client.send(greeting.as_bytes()).await.is_err() {
            return st.end("closed");
        }
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

/// The greeting for an implicit-TLS first flight, on a connection that is
/// (`tls`) or is not yet under TLS: `None` while the upstream's
/// capabilities were never learned, so that [`serve`] greets once they are
/// (rather than with Dovecot's defaults).
pub fn greeting(svc: &Service, tls: bool) -> Option<String> {
    let sieve = upstream::known_capabilities(svc.upstream.any())?;
    Some(reply::greeting(svc, tls, &sieve))
}

/// Reads, parses and answers one command.
async fn command(mut client: Client, svc: &Service, st: &mut Attempts) -> io::Result<Next> {
    let line = match read::line(&mut client, svc.limits.max_line).await {
        Read::Line(l) => l,
        Read::TooLong => {
            let no = reply::no("Command line too long.");
            client.send(no.as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
        Read::LiteralTooLong => {
            let bye = reply::bye("Literal too large.");
            client.send(bye.as_bytes()).await?;
            return Ok(Next::Done(st.end("closed")));
        }
        Read::Closed => return Ok(Next::Done(st.end("closed"))),
        Read::TimedOut => {
            let bye = reply::bye("Disconnected for inactivity.");
            client.send(bye.as_bytes()).await?;
            return Ok(Next::Done(st.end("timeout")));
        }
    };
    match command::parse(&line) {
        Ok(cmd) => {
            drop(line);
            dispatch(cmd, client, svc, st).await
        }
        Err(command::SyntaxError(message)) => {
            client.send(reply::no(message).as_bytes()).await?;
            Ok(Next::Continue(client))
        }
    }
}

async fn dispatch(
    cmd: Command,
    mut client: Client,
    svc: &Service,
    st: &mut Attempts,
) -> io::Result<Next> {
    let text = match cmd {
        Command::Authenticate { mechanism, initial } => {
            let req = Request {
                mechanism: &mechanism,
                initial: initial.as_ref().map(|i| i.as_slice()),
                helo: None,
            };
            return authenticate(client, svc, st, req).await;
        }
        Command::StartTls => return start_tls(client, svc).await,
        Command::Capability => {
            let sieve = upstream::capabilities(svc.upstream.any());
            let offer = reply::Offer::of(svc, client.is_tls());
            reply::capabilities(offer, &sieve) + &reply::ok("Capability completed.")
        }
        Command::Noop { tag: Some(tag) } => {
            let tag = super::syntax::server_string(&tag);
            format!("OK (TAG {}) \"Done\"\r\n", String::from_utf8_lossy(&tag))
        }
        Command::Noop { tag: None } => reply::ok("Done"),
        Command::Logout => {
            client
                .send(reply::ok("Logout completed.").as_bytes())
                .await?;
            return Ok(Next::Done(st.end("logout")));
        }
        Command::Other(name) => reply::no(&format!(
            "Command {name} is unknown or not allowed before login."
        )),
    };
    client.send(text.as_bytes()).await?;
    Ok(Next::Continue(client))
}

/// AUTHENTICATE: the shared login path with ManageSieve's wire syntax.
async fn authenticate(
    client: Client,
    svc: &Service,
    st: &mut Attempts,
    req: Request<'_>,
) -> io::Result<Next> {
    let wire = SieveWire {
        max: svc.limits.max_line,
    };
    Ok(
        match login::authenticate(&wire, client, svc, st, req).await? {
            After::Continue(c) => Next::Continue(c),
            After::LoggedIn(c, up) => Next::LoggedIn(c, up, std::mem::take(&mut st.outcome)),
            After::Done(result) => Next::Done(st.end(result)),
        },
    )
}

/// STARTTLS (§2.2): `OK`, the handshake, then the capabilities again,
/// unprompted, as they are under TLS.
async fn start_tls(mut client: Client, svc: &Service) -> io::Result<Next> {
    let acceptor = match (&svc.tls, svc.listener.tls) {
        (Some(a), TlsMode::StartTls) if !client.is_tls() => a,
        _ => {
            let why = if client.is_tls() {
                "TLS is already active."
            } else {
                "STARTTLS is not offered here."
            };
            client.send(reply::no(why).as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
    };
    let ok = reply::ok("Begin TLS negotiation now.");
    client.send(ok.as_bytes()).await?;
    let mut client = client.start_tls(acceptor).await?;
    let sieve = upstream::capabilities(svc.upstream.any());
    let caps = reply::capabilities(reply::Offer::of(svc, true), &sieve)
        + &reply::ok("TLS negotiation successful.");
    client.send(caps.as_bytes()).await?;
    Ok(Next::Continue(client))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod session_tests;
