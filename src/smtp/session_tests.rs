//! SMTP session transcripts: the pre-auth state and bearer logins, against
//! a fake Postfix (see [`crate::transcript`]).

use crate::transcript::fake::{self, UNKNOWN_USER};
use crate::transcript::*;

const EHLO: &str = "
    S: 250-proxy.test
    S: 250-PIPELINING
    S: 250-SIZE 10240000
    S: 250-ENHANCEDSTATUSCODES
    S: 250-8BITMIME
";
const OK: &str = "235 2.7.0 Authentication successful";
const INVALID: &str = "535 5.7.8 Authentication credentials invalid";

/// A session that said `EHLO client.test` to a bearer-only listener.
async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::smtp().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    c.script("S: 220 proxy.test ESMTP\nC: EHLO client.test")
        .await;
    c.script(EHLO).await;
    c.expect("250 AUTH OAUTHBEARER XOAUTH2").await;
    (c, up)
}

/// The `334 <base64>` error challenge's JSON, after which the client's
/// dummy answer must end in 535.
async fn refused(c: &mut Conn) -> serde_json::Value {
    let json = challenge_json(&c.line().await, "334 ");
    c.send("AQ==").await;
    c.expect(INVALID).await;
    json
}

#[tokio::test]
async fn banner_ehlo_and_commands_before_auth() {
    let (mut c, up) = session(Listener::smtp()).await;
    c.script(
        "
        C: NOOP
        S: 250 2.0.0 OK
        C: MAIL FROM:<alice@example.com>
        S: 530 5.7.0 Authentication required
        C: HELP
        S: 214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP RSET HELP QUIT
        C: XYZZY
        S: 500 5.5.2 Unknown command
        C: STARTTLS
        S: 502 5.5.1 STARTTLS is not offered here
        C: EHLO
        S: 501 5.5.4 Syntax: EHLO hostname
        C: RSET
        S: 250 2.0.0 OK
        C: QUIT
        S: 221 2.0.0 Bye
        ",
    )
    .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "quit");
    // The keywords came from one connection of the proxy's own.
    assert!(
        up.got("EHLO proxy.test") && up.got("QUIT"),
        "{:?}",
        up.received()
    );
}

#[tokio::test]
async fn passwords_are_offered_where_they_are_accepted() {
    let up = fake::smtp().await;
    let mut c = Conn::open(Listener::smtp().passthrough().service(&up.address)).await;
    c.script("S: 220 proxy.test ESMTP\nC: EHLO client.test")
        .await;
    c.script(EHLO).await;
    c.expect("250 AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN").await;
}

#[tokio::test]
async fn auth_needs_ehlo_first() {
    let up = fake::smtp().await;
    let mut c = Conn::open(Listener::smtp().service(&up.address)).await;
    let ir = xoauth2(USER, &token());
    c.script(&format!(
        "
        S: 220 proxy.test ESMTP
        C: AUTH XOAUTH2 {ir}
        S: 503 5.5.1 EHLO first
        C: HELO client.test
        S: 250 proxy.test
        C: AUTH XOAUTH2 {ir}
        S: 503 5.5.1 EHLO first
        "
    ))
    .await;
    assert!(up.received().is_empty(), "{:?}", up.received());
}

/// Both mechanisms, with an initial response and with a continuation: 235,
/// then the session is the upstream's (logged in by XCLIENT).
#[tokio::test]
async fn bearer_login_then_relay() {
    for (mechanism, ir) in [
        ("OAUTHBEARER", oauthbearer(Some(USER), &token())),
        ("XOAUTH2", xoauth2(USER, &token())),
    ] {
        for continuation in [false, true] {
            eprintln!("case: {mechanism}, continuation: {continuation}");
            login_and_relay(mechanism, &ir, continuation).await;
        }
    }
}

async fn login_and_relay(mechanism: &'static str, ir: &str, continuation: bool) {
    let (mut c, up) = session(Listener::smtp()).await;
    if continuation {
        c.script(&format!("C: AUTH {mechanism}\nS: 334 \nC: {ir}"))
            .await;
    } else {
        c.send(&format!("AUTH {mechanism} {ir}")).await;
    }
    c.script(&format!(
        "
        S: {OK}
        C: MAIL FROM:<{USER}>
        S: 250 2.0.0 Fake: ok
        C: QUIT
        S: 221 2.0.0 Fake: bye
        "
    ))
    .await;
    c.expect_closed().await;
    let xclient =
        format!("XCLIENT LOGIN={USER} ADDR=192.0.2.7 PORT=4321 HELO=client.test PROTO=ESMTP");
    assert!(up.got(&xclient), "{:?}", up.received());
    assert!(up.got("EHLO client.test") && up.got(&format!("MAIL FROM:<{USER}>")));
    let o = c.outcome().await;
    let who = (o.mechanism, o.user.as_deref());
    assert_eq!(who, (Some(mechanism), Some(USER)));
    assert_eq!(o.result, "relayed");
}

#[tokio::test]
async fn after_auth_ehlo_is_the_upstreams() {
    let (mut c, _up) = session(Listener::smtp()).await;
    c.send(&format!("AUTH OAUTHBEARER {}", oauthbearer(None, &token())))
        .await;
    c.script(&format!("S: {OK}\nC: EHLO client.test")).await;
    let mut reply = String::new();
    loop {
        let line = c.line().await;
        reply.push_str(&line);
        reply.push_str("\r\n");
        if line.starts_with("250 ") {
            break;
        }
    }
    assert_eq!(reply, fake::SMTP_EHLO);
}

#[tokio::test]
async fn pipelined_commands_after_auth_reach_the_upstream() {
    let (mut c, up) = session(Listener::smtp()).await;
    let ir = oauthbearer(None, &token());
    c.send_raw(&format!(
        "AUTH OAUTHBEARER {ir}\r\nMAIL FROM:<{USER}>\r\nRCPT TO:<bob@example.com>\r\n"
    ))
    .await;
    c.script(&format!(
        "S: {OK}\nS: 250 2.0.0 Fake: ok\nS: 250 2.0.0 Fake: ok"
    ))
    .await;
    assert!(up.got(&format!("MAIL FROM:<{USER}>")) && up.got("RCPT TO:<bob@example.com>"));
}

#[tokio::test]
async fn a_refused_token_gets_the_error_challenge_then_535() {
    let cases = [
        (forged_token(), "invalid_token"),
        (expired_token(), "invalid_token"),
        (unscoped_token(), "insufficient_scope"),
    ];
    for (token, status) in cases {
        let (mut c, up) = session(Listener::smtp()).await;
        c.send(&format!("AUTH OAUTHBEARER {}", oauthbearer(None, &token)))
            .await;
        let json = refused(&mut c).await;
        assert_eq!(json, serde_json::json!({"status": status, "scope": "mail"}));
        c.script("C: NOOP\nS: 250 2.0.0 OK").await;
        assert!(!up.received().iter().any(|l| l.starts_with("XCLIENT")));
    }
    let (mut c, _up) = session(Listener::smtp()).await;
    c.send(&format!("AUTH XOAUTH2 {}", xoauth2(USER, &forged_token())))
        .await;
    let want = serde_json::json!({"status": "400", "schemes": "bearer", "scope": "mail"});
    assert_eq!(refused(&mut c).await, want);
}

#[tokio::test]
async fn a_claimed_identity_must_be_the_tokens() {
    let (mut c, up) = session(Listener::smtp()).await;
    let ir = oauthbearer(Some("bob@example.com"), &token());
    c.send(&format!("AUTH OAUTHBEARER {ir}")).await;
    assert_eq!(refused(&mut c).await["status"], "invalid_request");
    assert!(!up.received().iter().any(|l| l.starts_with("XCLIENT")));
}

#[tokio::test]
async fn cancel_bad_base64_and_unknown_mechanisms() {
    let (mut c, _up) = session(Listener::smtp()).await;
    c.script(
        "
        C: AUTH OAUTHBEARER
        S: 334 
        C: *
        S: 501 5.5.2 Authentication cancelled
        C: AUTH XOAUTH2 *
        S: 501 5.5.2 Authentication cancelled
        C: AUTH XOAUTH2
        S: 334 
        C: %%%not-base64%%%
        S: 501 5.5.2 Invalid base64 data in authentication response
        C: AUTH OAUTHBEARER a
        S: 501 5.5.2 Invalid base64 data in authentication response
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Unsupported authentication mechanism
        C: AUTH PLAIN
        S: 504 5.5.4 Unsupported authentication mechanism
        C: AUTH
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: NOOP
        S: 250 2.0.0 OK
        ",
    )
    .await;
}

#[tokio::test]
async fn max_auth_failures_ends_the_session() {
    let (mut c, _up) = session(Listener::smtp().max_auth_failures(2)).await;
    for _ in 0..2 {
        c.send(&format!(
            "AUTH OAUTHBEARER {}",
            oauthbearer(None, &forged_token())
        ))
        .await;
        refused(&mut c).await;
    }
    c.expect("421 4.7.0 proxy.test Too many authentication failures")
        .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "too-many-failures");
}

#[tokio::test]
async fn the_upstream_refusing_the_user() {
    let (mut c, _up) = session(Listener::smtp()).await;
    let ir = xoauth2(UNKNOWN_USER, &token_for(UNKNOWN_USER));
    c.send(&format!("AUTH XOAUTH2 {ir}")).await;
    let want = "535 5.7.8 Authentication credentials invalid (the mail server does not accept this account)";
    c.expect(want).await;
}

#[tokio::test]
async fn the_upstream_down_is_454_and_not_counted() {
    let svc = Listener::smtp()
        .max_auth_failures(1)
        .service(&down_address());
    let mut c = Conn::open(svc).await;
    // Without the upstream, the keywords every Postfix offers.
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
        ",
    )
    .await;
    for _ in 0..2 {
        c.send(&format!("AUTH XOAUTH2 {}", xoauth2(USER, &token())))
            .await;
        c.expect(
            "454 4.7.0 Temporary authentication failure (mail server unavailable), try again later",
        )
        .await;
    }
    c.script("C: NOOP\nS: 250 2.0.0 OK").await;
}
