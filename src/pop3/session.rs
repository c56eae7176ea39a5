//! The POP3 AUTHORIZATION state (RFC 1939 §4): greeting, CAPA, STLS, AUTH,
//! USER/PASS and QUIT; everything else is `-ERR`. Each login attempt goes
//! to the shared path ([`crate::login`]); a successful one ends in the relay.

use super::command::{self, Command, SyntaxError};
use super::reply::{self, Offer};
use super::wire::Pop3Wire;
use crate::client::{Client, Input};
use crate::config::TlsMode;
use crate::gateway::{Outcome, Service};
use crate::login::{self, After, Attempts, Rejected, Wire};
use crate::upstream::LoggedIn;
use std::io;
use zeroize::Zeroizing;

/// What one command led to.
enum Next {
    Continue(Client),
    Done(Outcome),
    LoggedIn(Client, Box<LoggedIn>, Outcome),
}

/// The state between commands: the failures and outcome of the login
/// attempts, and the name a `USER` gave for the next `PASS`.
#[derive(Default)]
struct State {
    attempts: Attempts,
    user: Option<Zeroizing<Vec<u8>>>,
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut st = State::default();
    if !client.greeted && client.send(reply::greeting(svc).as_bytes()).await.is_err() {
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

/// Turns where an attempt left the connection into the session's next step.
fn after(st: &mut State, after: After) -> Next {
    match after {
        After::Continue(c) => Next::Continue(c),
        After::LoggedIn(c, up) => Next::LoggedIn(c, up, std::mem::take(&mut st.attempts.outcome)),
        After::Done(result) => Next::Done(st.attempts.end(result)),
    }
}

async fn command(mut client: Client, svc: &Service, st: &mut State) -> io::Result<Next> {
    let line = match client.read_line().await {
        Input::Line(l) => Zeroizing::new(l),
        Input::TooLong => {
            client.send(b"-ERR Command line too long.\r\n").await?;
            return Ok(Next::Continue(client));
        }
        Input::Closed => return Ok(Next::Done(st.attempts.end("closed"))),
        Input::TimedOut => {
            client.send(reply::IDLE_FAREWELL.as_bytes()).await?;
            return Ok(Next::Done(st.attempts.end("timeout")));
        }
    };
    match command::parse(&line) {
        Ok(cmd) => dispatch(client, svc, st, cmd).await,
        Err(SyntaxError(text)) => {
            client.send(format!("-ERR {text}\r\n").as_bytes()).await?;
            Ok(Next::Continue(client))
        }
    }
}

/// Answers one parsed command.
async fn dispatch(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    cmd: Command,
) -> io::Result<Next> {
    let offer = Offer::of(svc, client.is_tls());
    let answer: &[u8] = match cmd {
        Command::Capa => &offer.capa().into_bytes(),
        Command::AuthList => &offer.auth_list().into_bytes(),
        Command::Stls => return stls(client, svc, st).await,
        Command::Quit => {
            client.send(b"+OK Logging out.\r\n").await?;
            return Ok(Next::Done(st.attempts.end("logout")));
        }
        Command::Auth { mechanism, initial } => {
            st.user = None;
            let request = login::Request {
                mechanism: &mechanism,
                initial: initial.as_deref(),
                helo: None,
            };
            let done =
                login::authenticate(&Pop3Wire, client, svc, &mut st.attempts, request).await?;
            return Ok(after(st, done));
        }
        Command::User(name) => match user_refused(&offer) {
            Some(why) => &Pop3Wire.rejected(why),
            None => {
                st.user = Some(Zeroizing::new(name));
                b"+OK\r\n"
            }
        },
        Command::Pass(password) => return pass(client, svc, st, &password).await,
        Command::Apop => b"-ERR APOP is not offered here.\r\n",
        Command::NeedsAuth(_) | Command::Unknown(_) => b"-ERR Unknown command.\r\n",
    };
    client.send(answer).await?;
    Ok(Next::Continue(client))
}

/// `PASS` after `USER`: a password login on the shared path (labelled
/// `USER` in logs and metrics).
async fn pass(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    password: &[u8],
) -> io::Result<Next> {
    let Some(user) = st.user.take() else {
        client.send(b"-ERR No username given.\r\n").await?;
        return Ok(Next::Continue(client));
    };
    let attempts = &mut st.attempts;
    let done = login::password(&Pop3Wire, client, svc, attempts, "USER", &user, password).await?;
    Ok(after(st, done))
}

/// Why `USER` is refused at once (the shared path refuses the same way at
/// `PASS`; answering early keeps a client from sending its password).
fn user_refused(offer: &Offer) -> Option<Rejected> {
    if !offer.auth_allowed() {
        Some(Rejected::TlsRequired)
    } else if !offer.passwords {
        Some(Rejected::PasswordsDisabled)
    } else {
        None
    }
}

/// STLS (RFC 2595 §4): only on a STARTTLS listener, once. The client's
/// plaintext behind it is discarded by [`Client::start_tls`], and a `USER`
/// given before it is forgotten.
async fn stls(mut client: Client, svc: &Service, st: &mut State) -> io::Result<Next> {
    let acceptor = match (&svc.tls, svc.listener.tls) {
        (Some(a), TlsMode::StartTls) if !client.is_tls() => a,
        _ => {
            let why: &[u8] = if client.is_tls() {
                b"-ERR TLS is already active.\r\n"
            } else {
                b"-ERR STLS is not offered here.\r\n"
            };
            client.send(why).await?;
            return Ok(Next::Continue(client));
        }
    };
    client.send(b"+OK Begin TLS negotiation now.\r\n").await?;
    st.user = None;
    Ok(Next::Continue(client.start_tls(acceptor).await?))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
