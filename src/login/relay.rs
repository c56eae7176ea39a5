//! After a successful login: register the session, relay it, then
//! complete the outcome.

use crate::client::Client;
use crate::config::AtExpiry;
use crate::gateway::{Outcome, Service};
use crate::relay::{Control, End};
use crate::sessions::{registry::New, Grant, Reason};
use crate::upstream::LoggedIn;
use std::time::Duration;

/// Relays the session (the idle and end farewells are the front-end's)
/// and records how it ended; the byte counts survive every ending. The
/// session is in the registry while it is relayed.
pub async fn relay(
    client: &mut Client,
    svc: &Service,
    mut up: LoggedIn,
    mut outcome: Outcome,
) -> Outcome {
    svc.limiter.login_succeeded(client.peer.ip());
    let pending = client.take_buffered();
    let frontend = crate::frontend::of(svc.listener.protocol);
    let farewell = (frontend.idle_farewell)(svc);
    let idle = crate::relay::Idle {
        timeout: svc.limits.idle_timeout,
        farewell: farewell.as_bytes(),
    };
    let grant = outcome.grant.take().unwrap_or_else(Grant::passthrough);
    let registration = svc.sessions.register(
        New {
            user: outcome.user.as_deref().unwrap_or("-"),
            protocol: svc.listener.protocol.name(),
            listener: &svc.listener.name,
            client: client.peer,
            mechanism: outcome.mechanism.unwrap_or("-"),
            backend: outcome.backend.as_ref().map(|b| b.name.as_str()),
            begun: outcome.begun,
        },
        &grant,
    );
    let mut registration = registration;
    let traffic = registration.traffic.clone();
    let mut ended_by = None;
    let stop = async {
        let stop = &mut registration.stop;
        let reason = tokio::select! {
            r = stop => r.unwrap_or(Reason::Kicked),
            () = expiry(&grant) => Reason::Expired,
        };
        ended_by = Some(reason);
        (frontend.ended)(svc, reason.text()).into_bytes()
    };
    let control = Control {
        stop,
        traffic: traffic.as_ref(),
    };
    let ended = crate::relay::run(
        &mut client.stream,
        &pending,
        &mut up.stream,
        &up.buffered,
        idle,
        control,
    )
    .await;
    drop(registration);
    outcome.relayed = Some(ended.bytes);
    finish(outcome, ended.how, ended_by, client.peer, svc)
}

/// Completes when the grant's token expires, if the directory ends
/// sessions then (`session.at-expiry = "end"`); else never.
async fn expiry(grant: &Grant) {
    let policy = grant.validator.as_deref().map(|v| v.config());
    match (policy, grant.exp) {
        (Some(d), Some(exp)) if d.session.at_expiry == AtExpiry::End => {
            let at = exp + d.clock_skew.as_secs() as i64;
            let left = at.saturating_sub(crate::idp::cache::unix_now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(left)).await
        }
        _ => std::future::pending().await,
    }
}

fn finish(
    mut outcome: Outcome,
    how: End,
    ended_by: Option<Reason>,
    peer: std::net::SocketAddr,
    svc: &Service,
) -> Outcome {
    match how {
        End::Closed => outcome.ended("relayed"),
        End::HungUp(e) => {
            tracing::debug!(client = %peer, "the client hung up: {e}");
            outcome.ended("relayed")
        }
        End::Idle => outcome.ended("idle-timeout"),
        End::Stopped => {
            let reason = ended_by.unwrap_or(Reason::Kicked);
            crate::metrics::global().session_ended(&svc.listener.name, reason.name());
            outcome.ended(reason.name())
        }
        End::Failed(e) => {
            outcome.last_failure = Some(format!("relay: {e}"));
            outcome.ended("relay-error")
        }
    }
}
