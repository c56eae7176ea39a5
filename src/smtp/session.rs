//! The SMTP pre-authentication state machine: banner, EHLO/HELO,
//! STARTTLS, AUTH (bearer mechanisms, and PLAIN/LOGIN relayed to the
//! upstream with password passthrough), NOOP, RSET, HELP, QUIT; mail
//! transaction commands get `530`. A successful AUTH ends in the relay.

use super::command::{self, Command};
use super::reply::{self, Offer};
use crate::client::{Client, Input};
use crate::config::TlsMode;
use crate::gateway::{Failure, Handoff, Outcome, PasswordToken, Service};
use crate::sasl::{self, Mechanism};
use crate::secret::Secret;
use crate::upstream::{self, smtp::PasswordReply, LoggedIn};
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
    failures: u32,
    outcome: Outcome,
}

impl State {
    fn done(&mut self, result: &'static str) -> Next {
        Next::Done(std::mem::take(&mut self.outcome).ended(result))
    }
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut st = State::default();
    if !client.greeted && client.send(reply::banner(svc).as_bytes()).await.is_err() {
        return st.outcome.ended("closed");
    }
    loop {
        match command(client, svc, &mut st).await {
            Ok(Next::Continue(c)) => client = c,
            Ok(Next::Done(o)) => return o,
            Ok(Next::LoggedIn(mut c, up, o)) => {
                return crate::gateway::relay(&mut c, svc, *up, o).await
            }
            Err(e) => return st.outcome.ended(crate::client::io_end(&e)),
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
            let keywords = upstream::smtp::extensions(&svc.upstream, &svc.hostname).await;
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
            return auth(client, svc, st, &mechanism, initial).await
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
    let auth = reply::auth_allowed(svc, client);
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

/// Decodes a base64 SASL response; `Err` is the 501 reply to send.
fn decode(text: &[u8]) -> Result<Vec<u8>, &'static str> {
    if text.trim_ascii() == b"*" {
        return Err(reply::AUTH_CANCELLED);
    }
    sasl::decode_response(text).ok_or(reply::INVALID_BASE64)
}

/// Sends `334 <challenge>` and reads one response. `None`: the client went
/// away; `Some(Err(reply))`: the reply to send instead.
async fn sasl_response(
    client: &mut Client,
    challenge: &str,
) -> io::Result<Option<Result<Vec<u8>, &'static str>>> {
    client
        .send(format!("334 {challenge}\r\n").as_bytes())
        .await?;
    match client.read_line().await {
        Input::Line(l) => Ok(Some(decode(&l))),
        Input::TooLong => Ok(Some(Err(reply::RESPONSE_TOO_LONG))),
        Input::Closed | Input::TimedOut => Ok(None),
    }
}

/// Runs [`sasl_response`] inside a function returning `io::Result<Next>`:
/// yields the decoded bytes or returns the right `Next`.
macro_rules! response {
    ($client:expr, $st:expr, $challenge:expr) => {
        match sasl_response(&mut $client, $challenge).await? {
            Some(Ok(bytes)) => bytes,
            Some(Err(text)) => {
                $client.send(text.as_bytes()).await?;
                return Ok(Next::Continue($client));
            }
            None => return Ok($st.done("closed")),
        }
    };
}

async fn auth(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    mechanism: &str,
    initial: Option<Vec<u8>>,
) -> io::Result<Next> {
    let Some(helo) = st.ehlo.clone() else {
        client.send(reply::EHLO_FIRST.as_bytes()).await?;
        return Ok(Next::Continue(client));
    };
    if !reply::auth_allowed(svc, &client) {
        client.send(reply::ENCRYPTION_REQUIRED.as_bytes()).await?;
        return Ok(Next::Continue(client));
    }
    let mech = match Mechanism::from_name(mechanism) {
        Some(m) if m.is_bearer() || svc.listener.accepts_passwords() => m,
        _ => {
            client.send(reply::UNSUPPORTED_MECHANISM.as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
    };
    st.outcome.mechanism = Some(mech.name());
    let message = match initial {
        Some(ir) => match decode(&ir) {
            Ok(m) => m,
            Err(text) => {
                client.send(text.as_bytes()).await?;
                return Ok(Next::Continue(client));
            }
        },
        // LOGIN without an initial response starts with the user name prompt.
        None if mech == Mechanism::Login => Vec::new(),
        None => response!(client, st, ""),
    };
    match mech {
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => {
            let mut message = message;
            let next = bearer(client, svc, st, mech, &message, &helo).await;
            // The message holds the token.
            message.fill(0);
            next
        }
        Mechanism::Plain => plain(client, svc, st, message, &helo).await,
        Mechanism::Login => login(client, svc, st, message, &helo).await,
    }
}

async fn bearer(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    mech: Mechanism,
    message: &[u8],
    helo: &str,
) -> io::Result<Next> {
    let failure = match svc
        .bearer_login(client.info(), mech, message, Handoff::Smtp { helo })
        .await
    {
        Ok(success) => {
            st.outcome.user = Some(success.user);
            st.outcome.last_failure = None;
            client.send(reply::AUTH_SUCCEEDED.as_bytes()).await?;
            let outcome = std::mem::take(&mut st.outcome);
            return Ok(Next::LoggedIn(client, Box::new(success.upstream), outcome));
        }
        Err(f) => f,
    };
    if let Failure::Refused {
        status, directory, ..
    } = &failure
    {
        if !svc
            .error_challenge(&mut client, "334 ", mech, *status, *directory)
            .await?
        {
            failure.log(client.peer, st.outcome.mechanism);
            st.outcome.last_failure = Some(failure.reason().to_string());
            return Ok(st.done("auth-failed"));
        }
    }
    fail(client, svc, st, failure).await
}

/// Sends the failure reply (delayed for the client's faults) and enforces
/// `max-auth-failures`.
async fn fail(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    failure: Failure,
) -> io::Result<Next> {
    failure.log(client.peer, st.outcome.mechanism);
    st.outcome.last_failure = Some(failure.reason().to_string());
    if failure.is_client_fault() {
        // The penalty was booked with the verdict (`gateway`); the reply
        // itself waits the constant `auth-failure-delay`.
        tokio::time::sleep(svc.limiter.reply_delay()).await;
        st.failures += 1;
    }
    client.send(reply::failure(&failure).as_bytes()).await?;
    too_many(client, svc, st).await
}

async fn too_many(mut client: Client, svc: &Service, st: &mut State) -> io::Result<Next> {
    if st.failures >= svc.limits.max_auth_failures {
        client
            .send(reply::too_many_failures(svc).as_bytes())
            .await?;
        return Ok(st.done("too-many-failures"));
    }
    Ok(Next::Continue(client))
}

/// AUTH PLAIN, relayed: `authzid NUL authcid NUL password`.
async fn plain(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    mut message: Vec<u8>,
    helo: &str,
) -> io::Result<Next> {
    let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    if parts.len() != 3 || parts[1].is_empty() {
        message.fill(0);
        client.send(reply::INVALID_PLAIN.as_bytes()).await?;
        return Ok(Next::Continue(client));
    }
    st.outcome.user = Some(String::from_utf8_lossy(parts[1]).into_owned());
    if svc.password_is_token(parts[2]) {
        let token = Secret::new(String::from_utf8_lossy(parts[2]).into_owned());
        let (authzid, authcid) = (parts[0].to_vec(), parts[1].to_vec());
        message.fill(0);
        let creds = PasswordToken {
            authzid: Some(&authzid),
            username: &authcid,
            token: &token,
        };
        return password_token(client, svc, st, helo, creds).await;
    }
    let encoded = Secret::new(sasl::encode(&message));
    message.fill(0);
    passthrough(client, svc, st, helo, &encoded).await
}

/// AUTH LOGIN: `Username:` and `Password:` prompts, then relayed as PLAIN
/// with an empty authzid.
async fn login(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    initial: Vec<u8>,
    helo: &str,
) -> io::Result<Next> {
    let user = if initial.is_empty() {
        response!(client, st, "VXNlcm5hbWU6")
    } else {
        initial
    };
    let mut password = response!(client, st, "UGFzc3dvcmQ6");
    if user.is_empty() || user.contains(&0) || password.contains(&0) {
        password.fill(0);
        client.send(reply::INVALID_PLAIN.as_bytes()).await?;
        return Ok(Next::Continue(client));
    }
    st.outcome.user = Some(String::from_utf8_lossy(&user).into_owned());
    if svc.password_is_token(&password) {
        let token = Secret::new(String::from_utf8_lossy(&password).into_owned());
        password.fill(0);
        let creds = PasswordToken {
            authzid: None,
            username: &user,
            token: &token,
        };
        return password_token(client, svc, st, helo, creds).await;
    }
    let mut message = Vec::with_capacity(user.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(&user);
    message.push(0);
    message.extend_from_slice(&password);
    password.fill(0);
    let encoded = Secret::new(sasl::encode(&message));
    message.fill(0);
    passthrough(client, svc, st, helo, &encoded).await
}

/// `password-tokens`: AUTH PLAIN / LOGIN whose password is a bearer token,
/// validated like OAUTHBEARER. A refusal is a plain 535 (no error challenge
/// exists for these mechanisms).
async fn password_token(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    helo: &str,
    creds: PasswordToken<'_>,
) -> io::Result<Next> {
    let mechanism = st.outcome.mechanism.unwrap_or("-");
    let result = svc
        .password_token_login(client.info(), mechanism, creds, Handoff::Smtp { helo })
        .await;
    match result {
        Ok(success) => {
            st.outcome.user = Some(success.user);
            st.outcome.last_failure = None;
            client.send(reply::AUTH_SUCCEEDED.as_bytes()).await?;
            let outcome = std::mem::take(&mut st.outcome);
            Ok(Next::LoggedIn(client, Box::new(success.upstream), outcome))
        }
        Err(failure) => fail(client, svc, st, failure).await,
    }
}

/// Password passthrough: the upstream checks the password (Postfix SASL)
/// and its reply goes to the client.
async fn passthrough(
    mut client: Client,
    svc: &Service,
    st: &mut State,
    helo: &str,
    plain: &Secret,
) -> io::Result<Next> {
    let reply = upstream::smtp::password_login(&svc.upstream, client.info(), helo, plain).await;
    let result = match &reply {
        Ok(PasswordReply::Accepted(..)) => "ok",
        Ok(PasswordReply::Refused(_)) => "refused",
        Err(_) => "upstream-unavailable",
    };
    crate::metrics::global().login(
        &svc.listener.name,
        st.outcome.mechanism.unwrap_or("-"),
        result,
    );
    match reply {
        Ok(PasswordReply::Accepted(up, r)) => {
            st.outcome.last_failure = None;
            client
                .send(reply::multiline(r.code, &r.lines).as_bytes())
                .await?;
            let outcome = std::mem::take(&mut st.outcome);
            Ok(Next::LoggedIn(client, Box::new(up), outcome))
        }
        Ok(PasswordReply::Refused(r)) => {
            let why = format!("upstream refused the password: {}", r.text());
            tracing::info!(client = %client.peer, mechanism = st.outcome.mechanism.unwrap_or("-"), "{why}");
            st.outcome.last_failure = Some(why);
            // The upstream applies its own failure delay; a 4xx is its
            // temporary trouble, not the client's fault.
            if r.code >= 500 {
                st.failures += 1;
            }
            client
                .send(reply::multiline(r.code, &r.lines).as_bytes())
                .await?;
            too_many(client, svc, st).await
        }
        Err(e) => {
            let failure =
                Failure::UpstreamUnavailable(format!("upstream {}: {e}", svc.upstream.config.name));
            fail(client, svc, st, failure).await
        }
    }
}
