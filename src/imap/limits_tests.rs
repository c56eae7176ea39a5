//! IMAP session transcripts at the limits: the pre-auth deadline, the idle
//! timeout of a relayed session, over-long lines, literals and responses.

use crate::transcript::fake::{self, APP_PASSWORD};
use crate::transcript::*;

const INACTIVE: &str = "* BYE Disconnected for inactivity.";

async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::imap().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    (c, up)
}

#[tokio::test]
async fn the_pre_auth_deadline_says_bye() {
    let (mut c, _up) = session(Listener::imap().timeouts("1s", "35m")).await;
    c.script("C: A1 NOOP\nS: A1 OK NOOP completed.").await;
    c.expect(INACTIVE).await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "timeout");
}

#[tokio::test]
async fn the_pre_auth_deadline_inside_a_sasl_exchange() {
    let (mut c, _up) = session(Listener::imap().timeouts("1s", "35m")).await;
    c.script("C: A1 AUTHENTICATE XOAUTH2\nS: + ").await;
    c.expect(INACTIVE).await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "timeout");
}

#[tokio::test]
async fn an_idle_relayed_session_gets_the_farewell() {
    let (mut c, up) = session(Listener::imap().timeouts("10s", "1s")).await;
    let ir = xoauth2(USER, &token());
    c.send(&format!("A1 AUTHENTICATE XOAUTH2 {ir}")).await;
    assert!(c.line().await.starts_with("A1 OK [CAPABILITY "));
    c.expect(INACTIVE).await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "idle-timeout");
    assert!(!up.got("LOGOUT"));
}

#[tokio::test]
async fn over_long_lines_are_refused_and_the_session_goes_on() {
    let (mut c, _up) = session(Listener::imap()).await;
    let long = "x".repeat(70 * 1024);
    c.send(&format!("A1 NOOP {long}")).await;
    c.expect("* BAD Command line too long.").await;
    c.script("C: A2 AUTHENTICATE OAUTHBEARER\nS: + ").await;
    c.send(&long).await;
    c.expect("A2 BAD Authentication response too long.").await;
    c.script("C: A3 NOOP\nS: A3 OK NOOP completed.").await;
}

#[tokio::test]
async fn a_synchronizing_literal_over_the_limit_is_refused_with_its_tag() {
    let (mut c, _up) = session(Listener::imap().passthrough()).await;
    c.send(&format!("A1 LOGIN {USER} {{70000}}")).await;
    let reply = c.line().await;
    assert!(reply.starts_with("A1 BAD "), "{reply}");
    c.script("C: A2 NOOP\nS: A2 OK NOOP completed.").await;
}

#[tokio::test]
async fn a_non_synchronizing_literal_over_the_limit_ends_the_session() {
    let (mut c, _up) = session(Listener::imap().passthrough()).await;
    c.send(&format!("A1 LOGIN {USER} {{70000+}}")).await;
    c.expect("* BYE Literal too large.").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn a_non_synchronizing_literal_within_the_limit() {
    let (mut c, up) = session(Listener::imap().passthrough()).await;
    let len = APP_PASSWORD.len();
    c.send_raw(&format!(
        "A1 LOGIN {{{}+}}\r\n{USER} {{{len}+}}\r\n{APP_PASSWORD}\r\n",
        USER.len()
    ))
    .await;
    assert!(c.line().await.starts_with("A1 OK [CAPABILITY "));
    assert!(up.got(&format!(
        "P1 AUTHENTICATE PLAIN {}",
        plain("", USER, APP_PASSWORD)
    )));
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_unavailable_after_connect_timeout() {
    let up = fake::blackhole().await;
    let mut c = Conn::open(Listener::imap().service(&up.address)).await;
    c.line().await;
    c.send(&format!(
        "A1 AUTHENTICATE XOAUTH2 {}",
        xoauth2(USER, &token())
    ))
    .await;
    let want = "A1 NO [UNAVAILABLE] Mail server temporarily unavailable, try again later.";
    c.expect(want).await;
}
