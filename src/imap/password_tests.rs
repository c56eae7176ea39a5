//! IMAP session transcripts: password logins (passthrough to the fake
//! Dovecot, password tokens) and the upstream's refusals.

use crate::transcript::fake::{self, APP_PASSWORD, BUSY_PASSWORD};
use crate::transcript::*;

const LOGGED_IN: &str = "OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] Logged in";
const REFUSED: &str = "NO [AUTHENTICATIONFAILED] Fake: authentication failed.";
const BUSY: &str = "NO [UNAVAILABLE] Fake: try again later.";

async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::imap().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    (c, up)
}

/// The client's own credentials reach Dovecot as `AUTHENTICATE PLAIN`.
fn relayed(up: &fake::Upstream, user: &str, password: &str) -> bool {
    up.got(&format!(
        "P1 AUTHENTICATE PLAIN {}",
        plain("", user, password)
    ))
}

#[tokio::test]
async fn plain_passthrough_accepted() {
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    let ir = plain("", USER, APP_PASSWORD);
    c.script(&format!(
        "
        C: A1 AUTHENTICATE PLAIN {ir}
        S: A1 {LOGGED_IN}
        C: A2 EXAMINE INBOX
        S: A2 OK Fake: EXAMINE INBOX done.
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD) && up.got("A2 EXAMINE INBOX"));
    let o = c.outcome().await;
    assert_eq!(
        (o.mechanism, o.user.as_deref()),
        (Some("PLAIN"), Some(USER))
    );
}

#[tokio::test]
async fn login_command_and_login_mechanism_passthrough() {
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    c.script(&format!(
        "
        C: A1 LOGIN {USER} \"{APP_PASSWORD}\"
        S: A1 {LOGGED_IN}
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD));
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    let (user, password) = (b64(USER), b64(APP_PASSWORD));
    c.script(&format!(
        "
        C: A1 AUTHENTICATE LOGIN
        S: + VXNlcm5hbWU6
        C: {user}
        S: + UGFzc3dvcmQ6
        C: {password}
        S: A1 {LOGGED_IN}
        "
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD));
}

#[tokio::test]
async fn login_with_a_literal_password() {
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    c.script(&format!(
        "
        C: A1 LOGIN {USER} {{{len}}}
        S: + Ready for literal data
        C: {APP_PASSWORD}
        S: A1 {LOGGED_IN}
        ",
        len = APP_PASSWORD.len()
    ))
    .await;
    assert!(relayed(&up, USER, APP_PASSWORD));
}

/// Refusals are relayed; a temporary one (`[UNAVAILABLE]`) is not counted
/// towards `max-auth-failures`.
#[tokio::test]
async fn passthrough_refusals_and_the_failure_count() {
    let (mut c, up) = session(Listener::imap().passthrough().max_auth_failures(2)).await;
    let wrong = plain("", USER, "wrong");
    let busy = plain("", USER, BUSY_PASSWORD);
    c.script(&format!(
        "
        C: A1 AUTHENTICATE PLAIN {wrong}
        S: A1 {REFUSED}
        C: A2 AUTHENTICATE PLAIN {busy}
        S: A2 {BUSY}
        C: A3 LOGIN {USER} {BUSY_PASSWORD}
        S: A3 {BUSY}
        C: A4 NOOP
        S: A4 OK NOOP completed.
        C: A5 LOGIN {USER} wrong
        S: A5 {REFUSED}
        S: * BYE Too many authentication failures.
        "
    ))
    .await;
    c.expect_closed().await;
    assert!(relayed(&up, USER, "wrong"));
    let o = c.outcome().await;
    assert_eq!(o.result, "too-many-failures");
    assert!(o
        .last_failure
        .is_some_and(|f| f.contains("Fake: authentication failed")));
}

#[tokio::test]
async fn malformed_plain_credentials() {
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    let no_user = plain("", "", "pw");
    let one_part = b64("just-one-part");
    c.script(&format!(
        "
        C: A1 AUTHENTICATE PLAIN {no_user}
        S: A1 BAD Invalid PLAIN or LOGIN credentials.
        C: A2 AUTHENTICATE PLAIN {one_part}
        S: A2 BAD Invalid PLAIN or LOGIN credentials.
        C: A3 NOOP
        S: A3 OK NOOP completed.
        "
    ))
    .await;
    assert!(up.received().is_empty(), "{:?}", up.received());
}

#[tokio::test]
async fn a_password_token_via_login() {
    let listener = Listener::imap().passthrough().password_tokens();
    let (mut c, up) = session(listener).await;
    let token = token();
    c.script(&format!("C: A1 LOGIN {USER} {token}\nS: A1 {LOGGED_IN}"))
        .await;
    // The token is not passed on: the proxy logs in as the master user.
    assert!(up.got(&format!(
        "P1 AUTHENTICATE PLAIN {}",
        plain(USER, "proxy", MASTER)
    )));
    assert!(!relayed(&up, USER, &token));
    let o = c.outcome().await;
    assert_eq!(
        (o.mechanism, o.user.as_deref()),
        (Some("LOGIN"), Some(USER))
    );
}

#[tokio::test]
async fn a_password_token_for_another_user_is_refused() {
    let listener = Listener::imap().passthrough().password_tokens();
    let (mut c, up) = session(listener).await;
    let token = token();
    let mismatch = plain("bob@example.com", USER, &token);
    c.script(&format!(
        "
        C: A1 LOGIN bob@example.com {token}
        S: A1 NO [AUTHENTICATIONFAILED] Authentication failed.
        C: A2 AUTHENTICATE PLAIN {mismatch}
        S: A2 NO [AUTHENTICATIONFAILED] Authentication failed.
        "
    ))
    .await;
    assert!(up.received().is_empty(), "{:?}", up.received());
}

#[tokio::test]
async fn passthrough_with_the_upstream_down() {
    let svc = Listener::imap().passthrough().service(&down_address());
    let mut c = Conn::open(svc).await;
    c.line().await;
    c.script(&format!(
        "
        C: A1 LOGIN {USER} {APP_PASSWORD}
        S: A1 NO [UNAVAILABLE] Mail server temporarily unavailable, try again later.
        "
    ))
    .await;
}
