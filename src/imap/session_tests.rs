//! IMAP session transcripts: the pre-login state and bearer logins,
//! against a fake Dovecot (see [`crate::transcript`]).

use crate::transcript::fake::{self, IMAP_CAPABILITIES, UNKNOWN_USER};
use crate::transcript::*;

const GREETING_BEARER_ONLY: &str =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=OAUTHBEARER AUTH=XOAUTH2 LOGINDISABLED] proxy.test ready.";
const LOGGED_IN: &str = "OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] Logged in";

/// A session on a bearer-only listener and its fake Dovecot.
async fn session(listener: Listener) -> (Conn, fake::Upstream) {
    let up = fake::imap().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    (c, up)
}

/// The `+ <base64>` error challenge's JSON, after which the client's dummy
/// answer must end in `NO [AUTHENTICATIONFAILED]`.
async fn refused(c: &mut Conn, tag: &str, dummy: &str) -> serde_json::Value {
    let json = challenge_json(&c.line().await, "+ ");
    c.send(dummy).await;
    c.expect(&format!(
        "{tag} NO [AUTHENTICATIONFAILED] Authentication failed."
    ))
    .await;
    json
}

#[tokio::test]
async fn greeting_and_commands_before_login() {
    let up = fake::imap().await;
    let mut c = Conn::open(Listener::imap().service(&up.address)).await;
    c.expect(GREETING_BEARER_ONLY).await;
    c.script(
        r#"
        C: A1 CAPABILITY
        S: * CAPABILITY IMAP4rev1 SASL-IR ID AUTH=OAUTHBEARER AUTH=XOAUTH2 LOGINDISABLED
        S: A1 OK Pre-login capabilities listed, post-login capabilities have more.
        C: A2 NOOP
        S: A2 OK NOOP completed.
        C: A3 ID ("name" "transcript")
        S: * ID ("name" "oauthbearer-proxy")
        S: A3 OK ID completed.
        C: A4 SELECT INBOX
        S: A4 BAD Command SELECT is unknown or not allowed before login.
        C: A5 STARTTLS
        S: A5 BAD STARTTLS is not offered here.
        C: A6 CAPABILITY now
        S: A6 BAD Error in IMAP command: unexpected arguments
        C: )
        S: * BAD Error in IMAP command received by server.
        C: A7 LOGOUT
        S: * BYE Logging out
        S: A7 OK Logout completed.
        "#,
    )
    .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "logout");
    assert!(up.received().is_empty(), "{:?}", up.received());
}

#[tokio::test]
async fn passwords_are_offered_where_they_are_accepted() {
    let up = fake::imap().await;
    let mut c = Conn::open(Listener::imap().passthrough().service(&up.address)).await;
    c.script(
        "
        S: * OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=OAUTHBEARER AUTH=XOAUTH2 AUTH=PLAIN AUTH=LOGIN] proxy.test ready.
        C: A1 CAPABILITY
        S: * CAPABILITY IMAP4rev1 SASL-IR ID AUTH=OAUTHBEARER AUTH=XOAUTH2 AUTH=PLAIN AUTH=LOGIN
        S: A1 OK Pre-login capabilities listed, post-login capabilities have more.
        ",
    )
    .await;
}

/// Both mechanisms, with SASL-IR and with a continuation: the success
/// reply is the upstream's, and the session then reaches the upstream.
#[tokio::test]
async fn bearer_login_then_relay() {
    for (mechanism, ir) in [
        ("OAUTHBEARER", oauthbearer(Some(USER), &token())),
        ("OAUTHBEARER", oauthbearer(None, &token())),
        ("XOAUTH2", xoauth2(USER, &token())),
    ] {
        for continuation in [false, true] {
            eprintln!("case: {mechanism}, continuation: {continuation}");
            login_and_relay(mechanism, &ir, continuation).await;
        }
    }
}

async fn login_and_relay(mechanism: &'static str, ir: &str, continuation: bool) {
    let (mut c, up) = session(Listener::imap()).await;
    if continuation {
        c.script(&format!("C: A1 AUTHENTICATE {mechanism}\nS: + \nC: {ir}"))
            .await;
    } else {
        c.send(&format!("A1 AUTHENTICATE {mechanism} {ir}")).await;
    }
    c.script(&format!(
        "
        S: A1 {LOGGED_IN}
        C: A2 CAPABILITY
        S: * CAPABILITY {IMAP_CAPABILITIES}
        S: A2 OK Capability completed.
        C: A3 SELECT INBOX
        S: A3 OK Fake: SELECT INBOX done.
        C: A4 LOGOUT
        S: * BYE Fake: logging out
        S: A4 OK Logout completed.
        "
    ))
    .await;
    c.expect_closed().await;
    // ID with the client's address, then the master login as the user.
    let id = r#"P0 ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "4321""#;
    assert!(up.received()[0].starts_with(id), "{:?}", up.received());
    let master = plain(USER, "proxy", MASTER);
    assert_eq!(up.received()[1], format!("P1 AUTHENTICATE PLAIN {master}"));
    assert!(up.got("A3 SELECT INBOX"));
    let o = c.outcome().await;
    let who = (o.mechanism, o.user.as_deref());
    assert_eq!(who, (Some(mechanism), Some(USER)));
    assert_eq!(o.result, "relayed");
}

#[tokio::test]
async fn pipelined_commands_after_the_login_reach_the_upstream() {
    let (mut c, up) = session(Listener::imap()).await;
    let ir = oauthbearer(None, &token());
    c.send_raw(&format!(
        "A1 AUTHENTICATE OAUTHBEARER {ir}\r\nA2 NOOP\r\nA3 LOGOUT\r\n"
    ))
    .await;
    c.script(&format!(
        "
        S: A1 {LOGGED_IN}
        S: A2 OK Fake: NOOP done.
        S: * BYE Fake: logging out
        S: A3 OK Logout completed.
        "
    ))
    .await;
    c.expect_closed().await;
    assert!(up.got("A2 NOOP") && up.got("A3 LOGOUT"));
}

#[tokio::test]
async fn a_refused_token_gets_the_error_challenge_then_no() {
    let cases = [
        (forged_token(), "invalid_token"),
        (expired_token(), "invalid_token"),
        (unscoped_token(), "insufficient_scope"),
    ];
    for (token, status) in cases {
        let (mut c, up) = session(Listener::imap()).await;
        c.send(&format!(
            "A1 AUTHENTICATE OAUTHBEARER {}",
            oauthbearer(None, &token)
        ))
        .await;
        let json = refused(&mut c, "A1", "AQ==").await;
        assert_eq!(json, serde_json::json!({"status": status, "scope": "mail"}));
        c.script("C: A2 NOOP\nS: A2 OK NOOP completed.").await;
        assert!(up.received().is_empty(), "the upstream was never asked");
        let o = c.outcome().await;
        assert!(o.last_failure.is_some_and(|f| f.contains("directory idp")));
    }
}

#[tokio::test]
async fn xoauth2_error_challenge_is_googles_form() {
    let (mut c, _up) = session(Listener::imap()).await;
    c.send("A1 AUTHENTICATE XOAUTH2").await;
    c.expect("+ ").await;
    c.send(&xoauth2(USER, &forged_token())).await;
    // XOAUTH2 clients answer the error with an empty line.
    let json = refused(&mut c, "A1", "").await;
    let want = serde_json::json!({"status": "400", "schemes": "bearer", "scope": "mail"});
    assert_eq!(json, want);
}

#[tokio::test]
async fn a_claimed_identity_must_be_the_tokens() {
    let (mut c, up) = session(Listener::imap()).await;
    let ir = oauthbearer(Some("bob@example.com"), &token());
    c.send(&format!("A1 AUTHENTICATE OAUTHBEARER {ir}")).await;
    let json = refused(&mut c, "A1", "AQ==").await;
    assert_eq!(json["status"], "invalid_request");
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn hanging_up_after_the_error_challenge_is_a_failure() {
    let (mut c, _up) = session(Listener::imap()).await;
    c.send(&format!(
        "A1 AUTHENTICATE OAUTHBEARER {}",
        oauthbearer(None, &forged_token())
    ))
    .await;
    challenge_json(&c.line().await, "+ ");
    let o = c.outcome().await;
    assert_eq!(o.result, "auth-failed");
    assert!(o.last_failure.is_some());
}

#[tokio::test]
async fn cancel_bad_base64_and_unknown_mechanisms() {
    let (mut c, _up) = session(Listener::imap()).await;
    c.script(
        "
        C: A1 AUTHENTICATE OAUTHBEARER
        S: + 
        C: *
        S: A1 BAD Authentication aborted by client.
        C: A2 AUTHENTICATE XOAUTH2
        S: + 
        C: %%%not-base64%%%
        S: A2 BAD Invalid base64 data in authentication response.
        C: A3 AUTHENTICATE XOAUTH2 a
        S: A3 BAD Invalid base64 data in authentication response.
        C: A4 AUTHENTICATE CRAM-MD5
        S: A4 NO Unsupported authentication mechanism.
        C: A5 AUTHENTICATE PLAIN
        S: A5 NO Unsupported authentication mechanism.
        C: A6 LOGIN alice secret
        S: A6 NO [CANNOT] Password logins are disabled here; use OAuth (AUTHENTICATE OAUTHBEARER).
        C: A7 AUTHENTICATE OAUTHBEARER %%%
        S: A7 BAD Error in IMAP command AUTHENTICATE: invalid initial response
        ",
    )
    .await;
    // None of these was a failed credential: the session goes on.
    c.script("C: A8 NOOP\nS: A8 OK NOOP completed.").await;
}

#[tokio::test]
async fn max_auth_failures_ends_the_session() {
    let (mut c, _up) = session(Listener::imap().max_auth_failures(2)).await;
    for tag in ["A1", "A2"] {
        let ir = oauthbearer(None, &forged_token());
        c.send(&format!("{tag} AUTHENTICATE OAUTHBEARER {ir}"))
            .await;
        refused(&mut c, tag, "AQ==").await;
    }
    c.expect("* BYE Too many authentication failures.").await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "too-many-failures");
}

#[tokio::test]
async fn the_upstream_refusing_the_user_is_an_authentication_failure() {
    let (mut c, up) = session(Listener::imap()).await;
    let ir = oauthbearer(None, &token_for(UNKNOWN_USER));
    c.script(&format!(
        "
        C: A1 AUTHENTICATE OAUTHBEARER {ir}
        S: A1 NO [AUTHENTICATIONFAILED] The mail server does not accept this account.
        C: A2 NOOP
        S: A2 OK NOOP completed.
        "
    ))
    .await;
    assert!(up.got(&format!(
        "P1 AUTHENTICATE PLAIN {}",
        plain(UNKNOWN_USER, "proxy", MASTER)
    )));
}

#[tokio::test]
async fn the_upstream_down_is_unavailable_and_not_counted() {
    let svc = Listener::imap()
        .max_auth_failures(1)
        .service(&down_address());
    let mut c = Conn::open(svc).await;
    c.expect(GREETING_BEARER_ONLY).await;
    for tag in ["A1", "A2"] {
        c.send(&format!(
            "{tag} AUTHENTICATE XOAUTH2 {}",
            xoauth2(USER, &token())
        ))
        .await;
        let want = "NO [UNAVAILABLE] Mail server temporarily unavailable, try again later.";
        c.expect(&format!("{tag} {want}")).await;
    }
    c.script("C: A3 NOOP\nS: A3 OK NOOP completed.").await;
    let o = c.outcome().await;
    assert_eq!((o.result, o.user.as_deref()), ("closed", None));
}
