//! One authentication attempt, from the mechanism to the verdict: the
//! same rules for every protocol.

use super::{After, Attempts, Rejected, Response, Wire};
use crate::client::Client;
use crate::config::TlsMode;
use crate::gateway::{Failure, PasswordToken, Service, Success};
use crate::sasl::{self, plain::Credentials, Mechanism};
use crate::secret::Secret;
use crate::upstream::{self, LoginContext, PasswordReply};
use std::io;
use zeroize::Zeroizing;

/// A SASL authentication the client started (`AUTHENTICATE`, `AUTH`).
pub struct Request<'a> {
    pub mechanism: &'a str,
    /// The initial response as sent (base64, `=` for an empty one).
    pub initial: Option<&'a [u8]>,
    /// SMTP: the client's EHLO name, which the upstream login passes on.
    pub helo: Option<&'a str>,
}

/// What every step of an attempt needs.
#[derive(Clone, Copy)]
struct Ctx<'a, W> {
    wire: &'a W,
    svc: &'a Service,
    helo: Option<&'a str>,
}

impl<W: Wire> Ctx<'_, W> {
    fn login_context(&self, client: &Client) -> LoginContext<'_> {
        LoginContext {
            client: client.info(),
            helo: self.helo,
        }
    }
}

/// Whether authentication may happen on this connection now: under TLS,
/// or on a listener configured without TLS (the administrator vouches for
/// the path, e.g. loopback).
pub fn auth_allowed(svc: &Service, tls: bool) -> bool {
    tls || svc.listener.tls == TlsMode::None
}

/// A SASL authentication: mechanism choice, the exchange, the verdict.
pub async fn authenticate<W: Wire>(
    wire: &W,
    mut client: Client,
    svc: &Service,
    st: &mut Attempts,
    req: Request<'_>,
) -> io::Result<After> {
    if !auth_allowed(svc, client.is_tls()) {
        return rejected(wire, client, Rejected::TlsRequired).await;
    }
    st.outcome.begun = Some(svc.sessions.mark());
    let mech = match Mechanism::from_name(req.mechanism) {
        Some(m) if m.is_bearer() || svc.listener.accepts_passwords() => m,
        _ => return rejected(wire, client, Rejected::UnknownMechanism).await,
    };
    st.outcome.mechanism = Some(mech.name());
    let message = match req.initial {
        Some(ir) if ir.trim_ascii() == b"*" => {
            return rejected(wire, client, Rejected::Cancelled).await
        }
        Some(ir) => match sasl::decode_response(ir) {
            Some(m) => Zeroizing::new(m),
            None => return rejected(wire, client, Rejected::NotBase64).await,
        },
        // LOGIN without an initial response starts with the user name prompt.
        None if mech == Mechanism::Login => Zeroizing::new(Vec::new()),
        None => match exchange(wire, &mut client, "").await? {
            Ok(m) => m,
            Err(stop) => return stopped(wire, client, stop).await,
        },
    };
    let ctx = Ctx {
        wire,
        svc,
        helo: req.helo,
    };
    match mech {
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => {
            bearer(ctx, client, st, mech, &message).await
        }
        Mechanism::Plain => match sasl::plain::decode_plain(&message) {
            Ok(creds) => credentials(ctx, client, st, creds).await,
            Err(_) => rejected(wire, client, Rejected::MalformedCredentials).await,
        },
        Mechanism::Login => login_mechanism(ctx, client, st, message).await,
    }
}

/// A protocol's own password command (IMAP `LOGIN`, POP3 `USER`/`PASS`):
/// password token or passthrough, as PLAIN and LOGIN are. `label` names
/// the mechanism in logs and metrics.
#[allow(clippy::too_many_arguments)]
pub async fn password<W: Wire>(
    wire: &W,
    client: Client,
    svc: &Service,
    st: &mut Attempts,
    label: &'static str,
    user: &[u8],
    password: &[u8],
) -> io::Result<After> {
    if !auth_allowed(svc, client.is_tls()) {
        return rejected(wire, client, Rejected::TlsRequired).await;
    }
    if !svc.listener.accepts_passwords() {
        return rejected(wire, client, Rejected::PasswordsDisabled).await;
    }
    st.outcome.mechanism = Some(label);
    st.outcome.begun = Some(svc.sessions.mark());
    let ctx = Ctx {
        wire,
        svc,
        helo: None,
    };
    match sasl::plain::decode_login(user, password) {
        Ok(creds) => credentials(ctx, client, st, creds).await,
        Err(_) => rejected(wire, client, Rejected::MalformedCredentials).await,
    }
}

async fn rejected<W: Wire>(wire: &W, mut client: Client, why: Rejected) -> io::Result<After> {
    client.send(&wire.rejected(why)).await?;
    Ok(After::Continue(client))
}

/// Why an exchange did not give an answer.
enum Stop {
    /// An unusable answer: the attempt is refused, the session goes on.
    Rejected(Rejected),
    /// The client went away.
    Gone,
    /// The pre-auth deadline passed.
    TimedOut,
}

/// Sends a challenge and reads the answer.
async fn exchange<W: Wire>(
    wire: &W,
    client: &mut Client,
    challenge: &str,
) -> io::Result<Result<Zeroizing<Vec<u8>>, Stop>> {
    client.send(&wire.challenge(challenge)).await?;
    Ok(match wire.read_response(client).await {
        Response::Data(d) => Ok(d),
        Response::Cancelled => Err(Stop::Rejected(Rejected::Cancelled)),
        Response::Invalid => Err(Stop::Rejected(Rejected::NotBase64)),
        Response::TooLong => Err(Stop::Rejected(Rejected::TooLong)),
        Response::Gone => Err(Stop::Gone),
        Response::TimedOut => Err(Stop::TimedOut),
    })
}

/// Where an exchange that gave no answer leaves the connection.
async fn stopped<W: Wire>(wire: &W, mut client: Client, stop: Stop) -> io::Result<After> {
    match stop {
        Stop::Rejected(why) => rejected(wire, client, why).await,
        Stop::Gone => Ok(After::Done("closed")),
        Stop::TimedOut => {
            client.send(&wire.timed_out()).await?;
            Ok(After::Done("timeout"))
        }
    }
}

/// The LOGIN mechanism: `Username:` (unless given initially), `Password:`.
async fn login_mechanism<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
    initial: Zeroizing<Vec<u8>>,
) -> io::Result<After> {
    let user = if initial.is_empty() {
        match exchange(ctx.wire, &mut client, "VXNlcm5hbWU6").await? {
            Ok(u) => u,
            Err(stop) => return stopped(ctx.wire, client, stop).await,
        }
    } else {
        initial
    };
    let password = match exchange(ctx.wire, &mut client, "UGFzc3dvcmQ6").await? {
        Ok(p) => p,
        Err(stop) => return stopped(ctx.wire, client, stop).await,
    };
    st.outcome.user = Some(String::from_utf8_lossy(&user).into_owned());
    match sasl::plain::decode_login(&user, &password) {
        Ok(creds) => credentials(ctx, client, st, creds).await,
        Err(_) => rejected(ctx.wire, client, Rejected::MalformedCredentials).await,
    }
}

/// A bearer token: validated, then the upstream login as its user. A
/// refused token gets the RFC 7628 error challenge first; the client's
/// dummy answer (or its hanging up) ends the exchange.
async fn bearer<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
    mech: Mechanism,
    message: &[u8],
) -> io::Result<After> {
    let login = ctx.login_context(&client);
    let failure = match ctx.svc.bearer_login(login, mech, message).await {
        Ok(success) => return succeeded(ctx, client, st, success).await,
        Err(f) => f,
    };
    if let Failure::Refused {
        status, directory, ..
    } = &failure
    {
        let json = ctx.svc.challenge(mech, *status, *directory);
        client.send(&ctx.wire.challenge(&json)).await?;
        let gone = match ctx.wire.read_response(&mut client).await {
            Response::Gone => Some(Stop::Gone),
            Response::TimedOut => Some(Stop::TimedOut),
            _ => None,
        };
        if let Some(stop) = gone {
            failure.log(client.peer, st.outcome.mechanism);
            st.outcome.last_failure = Some(failure.reason().to_string());
            return match stop {
                Stop::TimedOut => stopped(ctx.wire, client, stop).await,
                _ => Ok(After::Done("auth-failed")),
            };
        }
    }
    fail(ctx, client, st, failure).await
}

/// Decoded PLAIN or LOGIN credentials: an app password or a password
/// token when the listener takes them and the password has their shape,
/// else passthrough.
async fn credentials<W: Wire>(
    ctx: Ctx<'_, W>,
    client: Client,
    st: &mut Attempts,
    creds: Credentials,
) -> io::Result<After> {
    st.outcome.user = Some(String::from_utf8_lossy(&creds.user).into_owned());
    if ctx.svc.password_is_app_password(&creds.password) {
        return app_password(ctx, client, st, creds).await;
    }
    if !ctx.svc.password_is_token(&creds.password) {
        return passthrough(ctx, client, st, creds).await;
    }
    let token = Secret::new(String::from_utf8_lossy(&creds.password).into_owned());
    let login = ctx.login_context(&client);
    let mechanism = st.outcome.mechanism.unwrap_or("-");
    let token_creds = PasswordToken {
        authzid: Some(&creds.authzid),
        username: &creds.user,
        token: &token,
    };
    match ctx
        .svc
        .password_token_login(login, mechanism, token_creds)
        .await
    {
        Ok(success) => succeeded(ctx, client, st, success).await,
        Err(failure) => fail(ctx, client, st, failure).await,
    }
}

/// Credentials whose password has an app password's shape, on a listener
/// that takes them: checked against the store, never passed through.
async fn app_password<W: Wire>(
    ctx: Ctx<'_, W>,
    client: Client,
    st: &mut Attempts,
    creds: Credentials,
) -> io::Result<After> {
    let login = ctx.login_context(&client);
    let mechanism = st.outcome.mechanism.unwrap_or("-");
    let presented = crate::apppass::login::Presented {
        authzid: Some(&creds.authzid),
        username: &creds.user,
        password: &creds.password,
    };
    match ctx
        .svc
        .app_password_login(login, mechanism, presented)
        .await
    {
        Ok(success) => succeeded(ctx, client, st, success).await,
        Err(failure) => fail(ctx, client, st, failure).await,
    }
}

async fn succeeded<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
    success: Success,
) -> io::Result<After> {
    st.outcome.user = Some(success.user);
    st.outcome.backend = Some(success.backend);
    st.outcome.grant = Some(success.grant);
    st.outcome.last_failure = None;
    client
        .send(&ctx.wire.logged_in(&success.upstream.reply))
        .await?;
    Ok(After::LoggedIn(client, Box::new(success.upstream)))
}

/// Sends the failure reply (delayed for the client's faults; the penalty
/// was booked with the verdict) and enforces `max-auth-failures`.
async fn fail<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
    failure: Failure,
) -> io::Result<After> {
    failure.log(client.peer, st.outcome.mechanism);
    st.outcome.last_failure = Some(failure.reason().to_string());
    if failure.is_client_fault() {
        tokio::time::sleep(ctx.svc.limiter.reply_delay()).await;
        st.failures += 1;
    }
    client.send(&ctx.wire.failed(&failure)).await?;
    too_many(ctx, client, st).await
}

async fn too_many<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
) -> io::Result<After> {
    if st.failures >= ctx.svc.limits.max_auth_failures {
        client.send(&ctx.wire.too_many_failures()).await?;
        return Ok(After::Done("too-many-failures"));
    }
    Ok(After::Continue(client))
}

/// Password passthrough: the upstream checks the client's own password
/// (and applies its own failure penalty to the client's address, which it
/// learns from the login). A temporary refusal is not the client's fault.
async fn passthrough<W: Wire>(
    ctx: Ctx<'_, W>,
    mut client: Client,
    st: &mut Attempts,
    creds: Credentials,
) -> io::Result<After> {
    let svc = ctx.svc;
    let mechanism = st.outcome.mechanism.unwrap_or("-");
    let login = ctx.login_context(&client);
    let (reply, backend) = match password_upstream(svc, login, &creds).await {
        Ok(r) => r,
        Err(failure) => {
            let label = failure.metric_label();
            crate::metrics::global().login(&svc.listener.name, mechanism, label);
            return fail(ctx, client, st, failure).await;
        }
    };
    let word = match &reply {
        Ok(PasswordReply::Accepted(_)) => "ok",
        Ok(PasswordReply::Refused { .. }) => "refused",
        Err(_) => "upstream-unavailable",
    };
    crate::metrics::global().login(&svc.listener.name, mechanism, word);
    match reply {
        Ok(PasswordReply::Accepted(up)) => {
            st.outcome.last_failure = None;
            st.outcome.backend = Some(backend);
            st.outcome.grant = Some(crate::sessions::Grant::passthrough());
            client.send(&ctx.wire.logged_in(&up.reply)).await?;
            Ok(After::LoggedIn(client, Box::new(up)))
        }
        Ok(PasswordReply::Refused { lines, temporary }) => {
            let text = lines
                .last()
                .map_or(String::new(), |l| upstream::printable(l));
            let why = format!("upstream refused the password: {text}");
            tracing::info!(client = %client.peer, mechanism, "{why}");
            st.outcome.last_failure = Some(why);
            if !temporary {
                st.failures += 1;
            }
            client.send(&ctx.wire.password_refused(&lines)).await?;
            too_many(ctx, client, st).await
        }
        Err(e) => {
            let name = &svc.upstream.config.name;
            let failure = Failure::UpstreamUnavailable(format!("upstream {name}: {e}"));
            fail(ctx, client, st, failure).await
        }
    }
}

type Relayed = (
    Result<PasswordReply, upstream::Error>,
    crate::backends::Chosen,
);

/// The relayed password's upstream login, on the backend that the user
/// name the client typed routes to (folded as the upstream folds it; no
/// token, so no routing claim).
async fn password_upstream(
    svc: &Service,
    login: LoginContext<'_>,
    creds: &Credentials,
) -> Result<Relayed, Failure> {
    let user = svc.upstream.user_key(&String::from_utf8_lossy(&creds.user));
    let key = crate::backends::RouteKey {
        user: &user,
        claim: None,
    };
    let plan = svc.upstream.plan(key, svc.listener.protocol)?;
    let password = upstream::Password {
        authzid: &creds.authzid,
        user: &creds.user,
        password: &creds.password,
    };
    let strategy = upstream::strategy(svc.listener.protocol);
    let relayed = (svc.upstream)
        .login(&plan, accepted, |target| async move {
            let attempt = strategy.password_login(&target, login, password);
            upstream::bounded(&target, attempt).await
        })
        .await;
    Ok(relayed)
}

fn accepted(reply: &PasswordReply) -> bool {
    matches!(reply, PasswordReply::Accepted(_))
}
