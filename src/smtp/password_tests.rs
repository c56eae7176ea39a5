//! SMTP session transcripts: AUTH PLAIN / LOGIN passthrough to the fake
//! Postfix, password tokens, and the upstream's refusals.

use crate::transcript::fake::{self, APP_PASSWORD, BUSY_PASSWORD};
use crate::transcript::*;

const ACCEPTED: &str = "235 2.7.0 Fake: authentication successful";
const REFUSED: &str = "535 5.7.8 Fake: authentication failed";
const BUSY: &str = "454 4.7.0 Fake: temporary authentication failure";

/// A session that said `EHLO client.test` to a listener taking passwords.
async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::smtp().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    c.script("S: 220 proxy.test ESMTP\nC: EHLO client.test")
        .await;
    while !c.line().await.starts_with("250 ") {}
    (c, up)
}

/// The client's own credentials reached Postfix after an XCLIENT without
/// `LOGIN=` (so Postfix applies its policies to the real client).
fn relayed(up: &fake::Upstream, user: &str, password: &str) -> bool {
    let xclient = "XCLIENT ADDR=192.0.2.7 PORT=4321 HELO=client.test PROTO=ESMTP";
    up.got(xclient) && up.got(&format!("AUTH PLAIN {}", plain("", user, password)))
}

#[tokio::test]
async fn plain_passthrough_accepted() {
    let (mut c, up) = session(Listener::smtp().passthrough()).await;
    let ir = plain("", USER, APP_PASSWORD);
    c.script(&format!(
        "
        C: AUTH PLAIN {ir}
        S: {ACCEPTED}
        C: MAIL FROM:<{USER}>
        S: 250 2.0.0 Fake: ok
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD), "{:?}", up.received());
    let o = c.outcome().await;
    assert_eq!(
        (o.mechanism, o.user.as_deref()),
        (Some("PLAIN"), Some(USER))
    );
}

#[tokio::test]
async fn login_mechanism_passthrough() {
    let (user, password) = (b64(USER), b64(APP_PASSWORD));
    let (mut c, up) = session(Listener::smtp().passthrough()).await;
    c.script(&format!(
        "
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: {user}
        S: 334 UGFzc3dvcmQ6
        C: {password}
        S: {ACCEPTED}
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD));
    // The user name as the initial response skips its prompt.
    let (mut c, up) = session(Listener::smtp().passthrough()).await;
    c.script(&format!(
        "
        C: AUTH LOGIN {user}
        S: 334 UGFzc3dvcmQ6
        C: {password}
        S: {ACCEPTED}
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD));
}

/// Postfix's refusals are relayed; a 4xx is not counted towards
/// `max-auth-failures`, a 5xx is.
#[tokio::test]
async fn passthrough_refusals_and_the_failure_count() {
    let (mut c, up) = session(Listener::smtp().passthrough().max_auth_failures(2)).await;
    let wrong = plain("", USER, "wrong");
    let busy = plain("", USER, BUSY_PASSWORD);
    c.script(&format!(
        "
        C: AUTH PLAIN {wrong}
        S: {REFUSED}
        C: AUTH PLAIN {busy}
        S: {BUSY}
        C: AUTH PLAIN {busy}
        S: {BUSY}
        C: NOOP
        S: 250 2.0.0 OK
        C: AUTH PLAIN {wrong}
        S: {REFUSED}
        S: 421 4.7.0 proxy.test Too many authentication failures
        "
    ))
    .await;
    c.expect_closed().await;
    assert!(relayed(&up, USER, "wrong"));
    assert_eq!(c.outcome().await.result, "too-many-failures");
}

#[tokio::test]
async fn malformed_plain_credentials() {
    let (mut c, up) = session(Listener::smtp().passthrough()).await;
    let no_password = plain("", USER, "");
    c.script(&format!(
        "
        C: AUTH PLAIN {no_password}
        S: 501 5.5.2 Invalid PLAIN or LOGIN response
        C: AUTH PLAIN =
        S: 501 5.5.2 Invalid PLAIN or LOGIN response
        "
    ))
    .await;
    assert!(!up.received().iter().any(|l| l.starts_with("AUTH")));
}

#[tokio::test]
async fn a_password_token_via_auth_plain() {
    let listener = Listener::smtp().passthrough().password_tokens();
    let (mut c, up) = session(listener).await;
    let ir = plain("", USER, &token());
    c.script(&format!(
        "C: AUTH PLAIN {ir}\nS: 235 2.7.0 Authentication successful"
    ))
    .await;
    // Logged in by XCLIENT as the token's user; the token is not passed on.
    let xclient =
        format!("XCLIENT LOGIN={USER} ADDR=192.0.2.7 PORT=4321 HELO=client.test PROTO=ESMTP");
    assert!(up.got(&xclient), "{:?}", up.received());
    assert!(!up.received().iter().any(|l| l.starts_with("AUTH")));
}

#[tokio::test]
async fn a_password_token_for_another_identity_is_refused() {
    let listener = Listener::smtp().passthrough().password_tokens();
    let (mut c, up) = session(listener).await;
    let token = token();
    let other_authzid = plain("bob@example.com", USER, &token);
    let other_user = plain("", "bob@example.com", &token);
    c.script(&format!(
        "
        C: AUTH PLAIN {other_authzid}
        S: 535 5.7.8 Authentication credentials invalid
        C: AUTH PLAIN {other_user}
        S: 535 5.7.8 Authentication credentials invalid
        "
    ))
    .await;
    assert!(!up.received().iter().any(|l| l.starts_with("XCLIENT")));
}

#[tokio::test]
async fn passthrough_with_the_upstream_down() {
    let svc = Listener::smtp().passthrough().service(&down_address());
    let mut c = Conn::open(svc).await;
    c.script("S: 220 proxy.test ESMTP\nC: EHLO client.test")
        .await;
    while !c.line().await.starts_with("250 ") {}
    let ir = plain("", USER, APP_PASSWORD);
    c.send(&format!("AUTH PLAIN {ir}")).await;
    c.expect(
        "454 4.7.0 Temporary authentication failure (mail server unavailable), try again later",
    )
    .await;
}

#[tokio::test]
async fn login_mechanism_cancelled_at_either_prompt() {
    let (mut c, up) = session(Listener::smtp().passthrough()).await;
    let user = b64(USER);
    c.script(&format!(
        "
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: *
        S: 501 5.5.2 Authentication cancelled
        C: AUTH LOGIN {user}
        S: 334 UGFzc3dvcmQ6
        C: *
        S: 501 5.5.2 Authentication cancelled
        C: NOOP
        S: 250 2.0.0 OK
        "
    ))
    .await;
    assert!(!up.received().iter().any(|l| l.starts_with("AUTH")));
}
