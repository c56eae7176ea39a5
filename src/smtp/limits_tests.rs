//! SMTP session transcripts at the limits: the pre-auth deadline, the idle
//! timeout of a relayed session, over-long lines and responses.

use crate::transcript::fake;
use crate::transcript::*;

async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::smtp().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    c.script("S: 220 proxy.test ESMTP\nC: EHLO client.test")
        .await;
    while !c.line().await.starts_with("250 ") {}
    (c, up)
}

#[tokio::test]
async fn the_pre_auth_deadline_says_421() {
    let (mut c, _up) = session(Listener::smtp().timeouts("1s", "35m")).await;
    c.expect("421 4.4.2 proxy.test Timeout").await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "timeout");
}

#[tokio::test]
async fn an_idle_relayed_session_gets_the_farewell() {
    let (mut c, _up) = session(Listener::smtp().timeouts("10s", "1s")).await;
    c.send(&format!("AUTH XOAUTH2 {}", xoauth2(USER, &token())))
        .await;
    c.expect("235 2.7.0 Authentication successful").await;
    c.expect("421 4.4.2 proxy.test Error: timeout exceeded")
        .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "idle-timeout");
}

#[tokio::test]
async fn over_long_lines_are_refused_and_the_session_goes_on() {
    let (mut c, _up) = session(Listener::smtp()).await;
    let long = "x".repeat(70 * 1024);
    c.send(&format!("NOOP {long}")).await;
    c.expect("500 5.5.6 Line too long").await;
    c.script("C: AUTH OAUTHBEARER\nS: 334 ").await;
    c.send(&long).await;
    c.expect("500 5.5.6 Authentication response too long").await;
    c.script("C: NOOP\nS: 250 2.0.0 OK").await;
}

/// The keywords every Postfix offers, once `connect-timeout` (2s) has
/// passed; today the client waits 30 s (the upstream reply timeout), past
/// its own pre-auth deadline.
#[tokio::test]
async fn ehlo_with_an_upstream_that_never_answers() {
    let up = fake::blackhole().await;
    let mut c = Conn::open(Listener::smtp().service(&up.address)).await;
    c.script(
        "
        S: 220 proxy.test ESMTP
        C: EHLO client.test
        S: 250-proxy.test
        S: 250-PIPELINING
        S: 250-SIZE
        S: 250-ENHANCEDSTATUSCODES
        S: 250-8BITMIME
        S: 250 AUTH OAUTHBEARER XOAUTH2
        C: NOOP
        S: 250 2.0.0 OK
        ",
    )
    .await;
}
