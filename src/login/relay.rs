//! After a successful login: relay the session, then complete the outcome.

use crate::client::Client;
use crate::gateway::{Outcome, Service};
use crate::relay::End;
use crate::upstream::LoggedIn;

/// Relays the session (the idle farewell is the front-end's) and records
/// how it ended; the byte counts survive every ending.
pub async fn relay(
    client: &mut Client,
    svc: &Service,
    mut up: LoggedIn,
    mut outcome: Outcome,
) -> Outcome {
    svc.limiter.login_succeeded(client.peer.ip());
    let pending = client.take_buffered();
    let farewell = (crate::frontend::of(svc.listener.protocol).idle_farewell)(svc);
    let idle = crate::relay::Idle {
        timeout: svc.limits.idle_timeout,
        farewell: farewell.as_bytes(),
    };
    let ended = crate::relay::run(
        &mut client.stream,
        &pending,
        &mut up.stream,
        &up.buffered,
        idle,
    )
    .await;
    outcome.relayed = Some(ended.bytes);
    match ended.how {
        End::Closed => outcome.ended("relayed"),
        End::HungUp(e) => {
            tracing::debug!(client = %client.peer, "the client hung up: {e}");
            outcome.ended("relayed")
        }
        End::Idle => outcome.ended("idle-timeout"),
        End::Failed(e) => {
            outcome.last_failure = Some(format!("relay: {e}"));
            outcome.ended("relay-error")
        }
    }
}
