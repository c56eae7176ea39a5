//! The IMAP pre-authentication state machine: greeting, CAPABILITY, NOOP,
//! ID, STARTTLS, LOGOUT, AUTHENTICATE and LOGIN; everything else is `BAD`.
//! A successful login ends in the relay.

use super::command::{self, Kind, ParseError};
use super::reply;
use crate::client::{Client, Input};
use crate::config::TlsMode;
use crate::gateway::{Failure, Handoff, Outcome, PasswordToken, Service};
use crate::sasl::{self, Mechanism};
use crate::secret::Secret;
use crate::upstream::{self, imap::Reply, LoggedIn};
use std::io;

/// What one command led to.
enum Next {
    Continue(Client),
    Done(Outcome),
    LoggedIn(Client, Box<LoggedIn>, Outcome),
}

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let mut outcome = Outcome::default();
    if !client.greeted
        && client
            .send(reply::greeting(svc, client.is_tls()).as_bytes())
            .await
            .is_err()
    {
        return outcome.ended("closed");
    }
    let mut failures = 0u32;
    loop {
        let step = command(client, svc, &mut outcome, &mut failures).await;
        match step {
            Ok(Next::Continue(c)) => client = c,
            Ok(Next::Done(o)) => return o,
            Ok(Next::LoggedIn(mut c, up, o)) => {
                return crate::gateway::relay(&mut c, svc, *up, o).await
            }
            Err(e) => return outcome.ended(crate::client::io_end(&e)),
        }
    }
}

async fn command(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
) -> io::Result<Next> {
    let line = match client.read_line().await {
        Input::Line(l) => l,
        Input::TooLong => {
            client.send(b"* BAD Command line too long.\r\n").await?;
            return Ok(Next::Continue(client));
        }
        Input::Closed => return Ok(Next::Done(std::mem::take(outcome).ended("closed"))),
        Input::TimedOut => {
            client
                .send(b"* BYE Disconnected for inactivity.\r\n")
                .await?;
            return Ok(Next::Done(std::mem::take(outcome).ended("timeout")));
        }
    };
    let full = match with_literals(&mut client, line, svc.limits.max_line).await? {
        Assembled::Command(full) => full,
        Assembled::Refused => return Ok(Next::Continue(client)),
        Assembled::Gone => return Ok(Next::Done(std::mem::take(outcome).ended("closed"))),
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
            return Ok(Next::Done(std::mem::take(outcome).ended("logout")));
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
            return authenticate(client, svc, outcome, failures, &tag, &mechanism, initial).await
        }
        Kind::Login { username, password } => {
            if !reply::auth_allowed(svc, &client) {
                client
                    .send(format!("{tag} {}\r\n", reply::PRIVACY_REQUIRED).as_bytes())
                    .await?;
            } else if !svc.listener.accepts_passwords() {
                client
                    .send(format!("{tag} NO [CANNOT] Password logins are disabled here; use OAuth (AUTHENTICATE OAUTHBEARER).\r\n").as_bytes())
                    .await?;
            } else {
                outcome.mechanism = Some("LOGIN");
                outcome.user = Some(String::from_utf8_lossy(&username).into_owned());
                if svc.password_is_token(password.expose()) {
                    let token = password.to_secret();
                    let creds = PasswordToken {
                        authzid: None,
                        username: &username,
                        token: &token,
                    };
                    return password_token(client, svc, outcome, failures, &tag, creds).await;
                }
                let mut cmd = b"LOGIN ".to_vec();
                cmd.extend(upstream::imap::astring(&username));
                cmd.push(b' ');
                cmd.extend(upstream::imap::astring(password.expose()));
                let result = passthrough(client, svc, outcome, failures, &tag, &cmd).await;
                cmd.fill(0);
                return result;
            }
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
}

/// Reads the literals a command line announces and appends them inline
/// (`{n}\r\n<bytes>` followed by the rest of the command).
async fn with_literals(client: &mut Client, first: Vec<u8>, max: usize) -> io::Result<Assembled> {
    let mut full = first;
    let mut last_line_start = 0;
    while let Some((n, sync)) = command::trailing_literal(&full[last_line_start..]) {
        if full.len() + n > max {
            if sync {
                // The client waits for "+" and sends nothing; we refuse.
                client.send(b"* BAD Literal too large.\r\n").await?;
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
            return Ok(Assembled::Gone);
        };
        full.extend_from_slice(b"\r\n");
        full.extend_from_slice(&data);
        last_line_start = full.len();
        match client.read_line().await {
            Input::Line(rest) => full.extend_from_slice(&rest),
            _ => return Ok(Assembled::Gone),
        }
    }
    Ok(Assembled::Command(full))
}

/// Reads one SASL response line. `Err(reply)` is the tagged BAD to send.
async fn sasl_response(
    client: &mut Client,
    tag: &str,
    challenge: &str,
) -> io::Result<Option<Result<Vec<u8>, String>>> {
    client.send(format!("+ {challenge}\r\n").as_bytes()).await?;
    let line = match client.read_line().await {
        Input::Line(l) => l,
        Input::TooLong => {
            return Ok(Some(Err(format!(
                "{tag} BAD Authentication response too long.\r\n"
            ))))
        }
        Input::Closed | Input::TimedOut => return Ok(None),
    };
    if line.trim_ascii() == b"*" {
        return Ok(Some(Err(format!(
            "{tag} BAD Authentication aborted by client.\r\n"
        ))));
    }
    Ok(Some(decode(tag, &line)))
}

fn decode(tag: &str, text: &[u8]) -> Result<Vec<u8>, String> {
    sasl::decode_response(text)
        .ok_or_else(|| format!("{tag} BAD Invalid base64 data in authentication response.\r\n"))
}

async fn authenticate(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
    tag: &str,
    mechanism: &str,
    initial: Option<Vec<u8>>,
) -> io::Result<Next> {
    let mech = match Mechanism::from_name(mechanism) {
        Some(m) if m.is_bearer() || svc.listener.accepts_passwords() => m,
        _ => {
            client
                .send(format!("{tag} NO Unsupported authentication mechanism.\r\n").as_bytes())
                .await?;
            return Ok(Next::Continue(client));
        }
    };
    if !reply::auth_allowed(svc, &client) {
        client
            .send(format!("{tag} {}\r\n", reply::PRIVACY_REQUIRED).as_bytes())
            .await?;
        return Ok(Next::Continue(client));
    }
    outcome.mechanism = Some(mech.name());
    let message = match initial {
        Some(ir) => decode(tag, &ir),
        None if mech == Mechanism::Login => Ok(Vec::new()),
        None => match sasl_response(&mut client, tag, "").await? {
            Some(r) => r,
            None => return Ok(Next::Done(std::mem::take(outcome).ended("closed"))),
        },
    };
    // The decoded SASL message holds the token or password.
    let message = match message {
        Ok(m) => zeroize::Zeroizing::new(m),
        Err(bad) => {
            client.send(bad.as_bytes()).await?;
            return Ok(Next::Continue(client));
        }
    };
    match mech {
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => {
            bearer(client, svc, outcome, failures, tag, mech, &message).await
        }
        Mechanism::Plain => {
            if message.is_empty() {
                client
                    .send(format!("{tag} BAD Empty PLAIN response.\r\n").as_bytes())
                    .await?;
                return Ok(Next::Continue(client));
            }
            if let Some(user) = message.split(|&b| b == 0).nth(1) {
                outcome.user = Some(String::from_utf8_lossy(user).into_owned());
            }
            let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
            if let [authzid, authcid, password] = parts[..] {
                if svc.password_is_token(password) {
                    let token = Secret::new(String::from_utf8_lossy(password).into_owned());
                    let creds = PasswordToken {
                        authzid: Some(authzid),
                        username: authcid,
                        token: &token,
                    };
                    return password_token(client, svc, outcome, failures, tag, creds).await;
                }
            } else if !svc.listener.password_passthrough {
                client
                    .send(format!("{tag} BAD Invalid PLAIN response.\r\n").as_bytes())
                    .await?;
                return Ok(Next::Continue(client));
            }
            let cmd = crate::secret::Secret::new(format!(
                "AUTHENTICATE PLAIN {}",
                sasl::encode(&message)
            ));
            passthrough(client, svc, outcome, failures, tag, cmd.expose().as_bytes()).await
        }
        Mechanism::Login => {
            // RFC-less but universal: "Username:" then "Password:" prompts.
            let user = if message.is_empty() {
                match sasl_response(&mut client, tag, "VXNlcm5hbWU6").await? {
                    Some(Ok(u)) => u,
                    Some(Err(bad)) => {
                        client.send(bad.as_bytes()).await?;
                        return Ok(Next::Continue(client));
                    }
                    None => return Ok(Next::Done(std::mem::take(outcome).ended("closed"))),
                }
            } else {
                message.to_vec()
            };
            let password = match sasl_response(&mut client, tag, "UGFzc3dvcmQ6").await? {
                Some(Ok(p)) => crate::secret::SecretBytes::new(p),
                Some(Err(bad)) => {
                    client.send(bad.as_bytes()).await?;
                    return Ok(Next::Continue(client));
                }
                None => return Ok(Next::Done(std::mem::take(outcome).ended("closed"))),
            };
            outcome.user = Some(String::from_utf8_lossy(&user).into_owned());
            if svc.password_is_token(password.expose()) {
                let token = password.to_secret();
                let creds = PasswordToken {
                    authzid: None,
                    username: &user,
                    token: &token,
                };
                return password_token(client, svc, outcome, failures, tag, creds).await;
            }
            let mut cmd = b"LOGIN ".to_vec();
            cmd.extend(upstream::imap::astring(&user));
            cmd.push(b' ');
            cmd.extend(upstream::imap::astring(password.expose()));
            let result = passthrough(client, svc, outcome, failures, tag, &cmd).await;
            cmd.fill(0);
            result
        }
    }
}

async fn bearer(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
    tag: &str,
    mech: Mechanism,
    message: &[u8],
) -> io::Result<Next> {
    let failure = match svc
        .bearer_login(client.info(), mech, message, Handoff::Imap)
        .await
    {
        Ok(success) => {
            outcome.user = Some(success.user);
            outcome.last_failure = None;
            let up = success.upstream;
            send_upstream_reply(&mut client, tag, &up.untagged, &up.tagged_text).await?;
            return Ok(Next::LoggedIn(
                client,
                Box::new(up),
                std::mem::take(outcome),
            ));
        }
        Err(f) => f,
    };
    if let Failure::Refused {
        status, directory, ..
    } = &failure
    {
        if !svc
            .error_challenge(&mut client, "+ ", mech, *status, *directory)
            .await?
        {
            failure.log(client.peer, outcome.mechanism);
            outcome.last_failure = Some(failure.reason().to_string());
            return Ok(Next::Done(std::mem::take(outcome).ended("auth-failed")));
        }
    }
    fail(client, svc, outcome, failures, tag, failure).await
}

/// `password-tokens`: LOGIN / AUTHENTICATE PLAIN / LOGIN whose password is
/// a bearer token. A refusal is a plain `NO [AUTHENTICATIONFAILED]`: these
/// mechanisms have no error challenge.
async fn password_token(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
    tag: &str,
    creds: PasswordToken<'_>,
) -> io::Result<Next> {
    let mechanism = outcome.mechanism.unwrap_or("-");
    let result = svc
        .password_token_login(client.info(), mechanism, creds, Handoff::Imap)
        .await;
    match result {
        Ok(success) => {
            outcome.user = Some(success.user);
            outcome.last_failure = None;
            let up = success.upstream;
            send_upstream_reply(&mut client, tag, &up.untagged, &up.tagged_text).await?;
            Ok(Next::LoggedIn(
                client,
                Box::new(up),
                std::mem::take(outcome),
            ))
        }
        Err(failure) => fail(client, svc, outcome, failures, tag, failure).await,
    }
}

/// Sends the failure reply (delayed for the client's faults) and enforces
/// `max-auth-failures`.
async fn fail(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
    tag: &str,
    failure: Failure,
) -> io::Result<Next> {
    failure.log(client.peer, outcome.mechanism);
    outcome.last_failure = Some(failure.reason().to_string());
    if failure.is_client_fault() {
        // The penalty was booked with the verdict (`gateway`); the reply
        // itself waits the constant `auth-failure-delay`.
        tokio::time::sleep(svc.limiter.reply_delay()).await;
        *failures += 1;
    }
    client
        .send(reply::failure(tag, &failure).as_bytes())
        .await?;
    if *failures >= svc.limits.max_auth_failures {
        client.send(reply::TOO_MANY_FAILURES.as_bytes()).await?;
        return Ok(Next::Done(
            std::mem::take(outcome).ended("too-many-failures"),
        ));
    }
    Ok(Next::Continue(client))
}

/// Forwards the upstream's login answer under the client's tag.
async fn send_upstream_reply(
    client: &mut Client,
    tag: &str,
    untagged: &[Vec<u8>],
    tagged_text: &[u8],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    for line in untagged {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(tagged_text);
    out.extend_from_slice(b"\r\n");
    client.send(&out).await
}

/// Password passthrough: the client's login command goes to the upstream,
/// after an ID that tells Dovecot the client's real address.
async fn passthrough(
    mut client: Client,
    svc: &Service,
    outcome: &mut Outcome,
    failures: &mut u32,
    tag: &str,
    login_command: &[u8],
) -> io::Result<Next> {
    let login = async {
        let session = upstream::imap::Session::open(&svc.upstream, client.info()).await?;
        session.login(login_command).await
    };
    let reply = upstream::bounded(&svc.upstream, login).await;
    let result = match &reply {
        Ok(Reply::Ok(_)) => "ok",
        Ok(Reply::No { .. }) => "refused",
        Err(_) => "upstream-unavailable",
    };
    crate::metrics::global().login(&svc.listener.name, outcome.mechanism.unwrap_or("-"), result);
    match reply {
        Ok(Reply::Ok(up)) => {
            outcome.last_failure = None;
            send_upstream_reply(&mut client, tag, &up.untagged, &up.tagged_text).await?;
            Ok(Next::LoggedIn(
                client,
                Box::new(up),
                std::mem::take(outcome),
            ))
        }
        Ok(Reply::No {
            untagged,
            tagged_text,
        }) => {
            // The upstream applies its own failure delay to the client's
            // real address (it got it through ID).
            *failures += 1;
            outcome.last_failure = Some(format!(
                "upstream refused the password: {}",
                upstream::imap::printable(&tagged_text)
            ));
            send_upstream_reply(&mut client, tag, &untagged, &tagged_text).await?;
            if *failures >= svc.limits.max_auth_failures {
                client.send(reply::TOO_MANY_FAILURES.as_bytes()).await?;
                return Ok(Next::Done(
                    std::mem::take(outcome).ended("too-many-failures"),
                ));
            }
            Ok(Next::Continue(client))
        }
        Err(e) => {
            let failure =
                Failure::UpstreamUnavailable(format!("upstream {}: {e}", svc.upstream.config.name));
            fail(client, svc, outcome, failures, tag, failure).await
        }
    }
}
