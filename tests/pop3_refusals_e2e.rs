//! POP3 end to end, what is refused and what fails: invalid, expired and
//! revoked tokens (RFC 7628 error challenge, then `-ERR [AUTH]`), authzid
//! mismatch, authentication before STLS, STLS injection, the provider and
//! Dovecot down (`-ERR [SYS/TEMP]`), and the shared limits with POP3's
//! farewells; against the real Dovecot pop3 and OpenID provider.

mod common;
#[path = "pop3/helpers.rs"]
mod helpers;
use common::*;
use helpers::*;

#[test]
fn continuation_empty_initial_response_and_cancel() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = pop3s(&peers, &proxy);
    c.send("AUTH OAUTHBEARER\r\n");
    assert_eq!(c.expect_line(), "+ ");
    c.send("*\r\n");
    assert_eq!(c.expect_line(), "-ERR Authentication aborted by client.");
    c.send("AUTH CRAM-MD5\r\n");
    assert_eq!(
        c.expect_line(),
        "-ERR Unsupported authentication mechanism."
    );
    c.send("NOOP\r\nAPOP alice 0123\r\nRETR 1\r\n");
    assert_eq!(c.expect_line(), "-ERR Unknown command.");
    assert!(c.expect_line().starts_with("-ERR APOP"));
    assert_eq!(c.expect_line(), "-ERR Unknown command.");
    c.send("AUTH OAUTHBEARER\r\n");
    assert_eq!(c.expect_line(), "+ ");
    c.send(&format!("{}\r\n", oauthbearer(None, &token)));
    assert_eq!(c.expect_line(), "+OK Logged in.");
    retrieve_welcome(&mut c, ALICE);
}

#[test]
fn invalid_expired_and_revoked_tokens_get_the_error_challenge_then_auth() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let expired = mint_token(&peers, "alice", SCOPE, 1);
    let revoked = mint_token(&peers, "alice", SCOPE, 300);
    let r = admin_post(&peers, "/revoke", &serde_json::json!({ "token": revoked }));
    assert_eq!(r["revoked"], true, "{r}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    for token in ["not-a-valid-token", expired.as_str(), revoked.as_str()] {
        // One connection each: three failures on one end it (max-auth-failures).
        let mut c = pop3s(&peers, &proxy);
        let challenge = refused_oauthbearer(&mut c, Some(ALICE), token);
        assert_eq!(challenge["status"], "invalid_token", "{challenge}");
    }
    // XOAUTH2: Google's challenge form, answered with an empty line.
    let mut c = pop3s(&peers, &proxy);
    c.send(&format!(
        "AUTH XOAUTH2 {}\r\n",
        xoauth2(ALICE, "not-a-valid-token")
    ));
    let challenge = challenge_json(&c.expect_line());
    assert_eq!(challenge["status"], "400", "{challenge}");
    c.send("\r\n");
    assert_eq!(c.expect_line(), AUTH_FAILED);
    c.send("CAPA\r\n");
    assert_eq!(c.expect_line(), "+OK");
}

#[test]
fn authzid_that_does_not_match_the_token_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = pop3s(&peers, &proxy);
    refused_oauthbearer(&mut c, Some("bob@example.com"), &token);
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2("bob", &token)));
    assert!(c.expect_line().starts_with("+ "));
    c.send("\r\n");
    assert_eq!(c.expect_line(), AUTH_FAILED);
    proxy.wait_log("does not match");
}

#[test]
fn stls_listener_refuses_auth_before_tls_and_discards_injected_commands() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("pop3"), false, &peers.ca());
    assert_eq!(c.expect_line(), "+OK proxy.test ready.");
    c.send("CAPA\r\n");
    let capa = c.until(".");
    assert!(capa.contains(&"STLS".to_string()), "{capa:?}");
    assert!(
        !capa.iter().any(|l| l.starts_with("SASL") || l == "USER"),
        "{capa:?}"
    );
    let privacy =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(c.expect_line(), privacy);
    c.send(&format!("USER {ALICE}\r\n"));
    assert_eq!(c.expect_line(), privacy);
    // STARTTLS injection (CVE-2011-0411 style): CAPA behind STLS in the
    // same write must not be answered inside TLS.
    c.send("STLS\r\nCAPA\r\n");
    assert_eq!(c.expect_line(), "+OK Begin TLS negotiation now.");
    c.upgrade();
    c.send("NOOP\r\n");
    assert_eq!(c.expect_line(), "-ERR Unknown command.");
    c.send("STLS\r\n");
    assert_eq!(c.expect_line(), "-ERR TLS is already active.");
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(c.expect_line(), "+OK Logged in.");
    retrieve_welcome(&mut c, ALICE);
}

#[test]
fn provider_down_and_dovecot_down_are_sys_temp() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    peers.control("stop oidc");
    let mut c = pop3s(&peers, &proxy);
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    let reply = c.expect_line();
    peers.control("start oidc");
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");

    peers.control("stop dovecot");
    let token = mint_token(&peers, "alice", SCOPE, 300);
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    let token_reply = c.expect_line();
    c.send(&format!("USER {ALICE}\r\nPASS {ALICE_PASSWORD}\r\n"));
    c.expect_line();
    let password_reply = c.expect_line();
    peers.control("start dovecot");
    assert!(token_reply.starts_with("-ERR [SYS/TEMP] "), "{token_reply}");
    assert!(
        password_reply.starts_with("-ERR [SYS/TEMP] "),
        "{password_reply}"
    );
    // Neither counted as the client's failure: the same session logs in.
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(c.expect_line(), "+OK Logged in.", "{}", proxy.log());
    retrieve_welcome(&mut c, ALICE);
}

/// What POP3 gets from the shared limits without code of its own: the
/// per-address limit, max-auth-failures and the idle timeout, each with
/// POP3's farewell.
#[test]
fn limits_failures_and_idle_timeout_end_with_pop3_farewells() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "idle-timeout = \"2s\"\nmax-connections-per-ip = 2\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut idle = Raw::connect_from("127.0.0.3", proxy.port("pop3s"), true, &peers.ca());
    idle.expect_line();
    idle.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(idle.expect_line(), "+OK Logged in.");
    let mut failing = Raw::connect_from("127.0.0.3", proxy.port("pop3s"), true, &peers.ca());
    failing.expect_line();
    let mut over = Raw::connect_from("127.0.0.3", proxy.port("pop3s"), true, &peers.ca());
    assert_eq!(
        over.expect_line(),
        "-ERR [SYS/TEMP] Too many connections from your address, try again later."
    );
    assert!(over.line().is_none());
    // max-auth-failures = 3: the third failure ends the connection.
    for _ in 0..3 {
        failing.send(&format!("USER {ALICE}\r\nPASS wrong\r\n"));
        assert_eq!(failing.expect_line(), "+OK");
        assert_eq!(failing.expect_line(), AUTH_FAILED);
    }
    assert_eq!(
        failing.expect_line(),
        "-ERR [AUTH] Too many authentication failures."
    );
    assert!(failing.line().is_none());
    // The logged-in session that stays idle is told and closed.
    assert_eq!(idle.expect_line(), "-ERR Disconnected for inactivity.");
    assert!(idle.line().is_none());
    proxy.wait_log("result=\"idle-timeout\"");
}

/// A name Dovecot does not allow (`+` is outside its default
/// auth_username_chars) gets the same `-ERR [AUTH] Authentication failed.`
/// as a wrong master secret; the proxy's probe login tells them apart, so
/// the client gets an `[AUTH]` refusal, not a temporary failure.
#[test]
fn a_user_name_dovecot_does_not_allow_is_an_authentication_failure() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "tagged", SCOPE, 300);
    // Its own client address: Dovecot's penalty follows the XCLIENT address.
    let mut c = Raw::connect_from("127.0.0.71", proxy.port("pop3s"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert_eq!(
        c.expect_line(),
        "-ERR [AUTH] The mail server does not accept this account.",
        "{}",
        proxy.log()
    );
    let log = proxy.wait_log("upstream dovecot-pop3 refused alice+tag@example.com");
    assert!(
        !log.contains("refused the proxy's own credentials"),
        "{log}"
    );
    let mut c = Raw::connect_from("127.0.0.72", proxy.port("pop3s"), true, &peers.ca());
    c.expect_line();
    let token = mint_token(&peers, "alice", SCOPE, 300);
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(c.expect_line(), "+OK Logged in.");
}
