//! ManageSieve end to end, the refusals: invalid, expired and revoked
//! tokens, an authzid for someone else, password passthrough (with the
//! client's address passed on), provider and Dovecot down (`NO (TRYLATER)`),
//! and the limits and timeouts in ManageSieve's words.

mod common;
mod managesieve_support;
use common::*;
use managesieve_support::*;
use std::time::Duration;

#[test]
fn invalid_expired_and_revoked_tokens_get_the_error_challenge_then_no() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let expired = mint_token(&peers, "alice", SCOPE, 1);
    let revoked = mint_token(&peers, "alice", SCOPE, 300);
    revoke(&peers, &revoked);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    let ch = refused(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some(ALICE), "not-a-token"),
    );
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    let ch = refused(&mut c, "XOAUTH2", &xoauth2(ALICE, "not-a-token"));
    assert_eq!(ch["status"], "400", "{ch}");
    assert_eq!(ch["schemes"], "bearer");
    let ch = refused(&mut c, "OAUTHBEARER", &oauthbearer(None, &revoked));
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    // Three failures end the connection.
    assert_eq!(c.expect_line(), "BYE \"Too many authentication failures.\"");
    assert_eq!(c.line(), None);
    std::thread::sleep(Duration::from_millis(2500));
    let (mut c, _) = sieve_tls(&peers, &proxy);
    let ch = refused(&mut c, "OAUTHBEARER", &oauthbearer(None, &expired));
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    c.send("NOOP\r\n");
    assert_eq!(c.expect_line(), "OK \"Done\"");
}

#[test]
fn an_authzid_that_does_not_match_the_token_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    refused(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some("bob@example.com"), &token),
    );
    refused(&mut c, "XOAUTH2", &xoauth2("bob@example.com", &token));
    proxy.wait_log("does not match");
}

#[test]
fn plain_passthrough_reaches_dovecot_with_the_client_address() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let tcp = tcp_from("127.0.0.9", proxy.port("sieve-tls"));
    let mut c = Raw::over(tcp, true, &peers.ca());
    c.until("OK");
    let wrong = b64(format!("\0{ALICE}\0wrong-password").as_bytes());
    c.send(&format!("AUTHENTICATE \"PLAIN\" \"{wrong}\"\r\n"));
    assert!(c.expect_line().starts_with("NO"));
    let right = b64(format!("\0{ALICE}\0alice-app-password").as_bytes());
    login(&mut c, "PLAIN", &right, true);
    c.send("LISTSCRIPTS\r\n");
    assert!(c.until("OK").last().unwrap().starts_with("OK"));
    wait_login_logged(&peers, "rip=127.0.0.9");
}

#[test]
fn provider_down_is_trylater_and_recovers() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    peers.control("stop oidc");
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    let reply = c.expect_line();
    peers.control("start oidc");
    assert!(reply.starts_with("NO (TRYLATER)"), "{reply}");
    let token = mint_token(&peers, "alice", SCOPE, 300);
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
}

#[test]
fn dovecot_down_is_trylater() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    peers.control("stop dovecot");
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    let bearer = c.expect_line();
    let plain = b64(format!("\0{ALICE}\0alice-app-password").as_bytes());
    c.send(&format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n"));
    let password = c.expect_line();
    peers.control("start dovecot");
    assert!(bearer.starts_with("NO (TRYLATER)"), "{bearer}");
    assert!(password.starts_with("NO (TRYLATER)"), "{password}");
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
}

#[test]
fn limits_and_timeouts_answer_in_managesieve() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "idle-timeout = \"2s\"\nmax-connections-per-ip = 1\n".into();
    opts.pre_auth_timeout = "2s";
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "bob", SCOPE, 300);
    // Nothing sent before the pre-auth deadline.
    let (mut c, _) = sieve_tls(&peers, &proxy);
    assert_eq!(c.expect_line(), "BYE \"Disconnected for inactivity.\"");
    assert_eq!(c.line(), None);
    std::thread::sleep(Duration::from_millis(300));
    // A relayed session, then a second connection from the same address.
    let (mut c, _) = sieve_tls(&peers, &proxy);
    login(&mut c, "XOAUTH2", &xoauth2("bob", &token), false);
    let mut second = Raw::connect(proxy.port("sieve-tls"), true, &peers.ca());
    assert_eq!(
        second.expect_line(),
        "BYE (TRYLATER) \"Too many connections from your address, try again later.\""
    );
    // The relayed session idles past idle-timeout.
    assert_eq!(c.expect_line(), "BYE \"Disconnected for inactivity.\"");
    assert_eq!(c.line(), None);
}

#[test]
fn dovecot_refusing_the_user_is_an_authentication_failure() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    // "noemail" is a provider account with no Dovecot mailbox.
    opts.imap_identity = "username";
    opts.directory = opts
        .directory
        .replace("required-scope = \"email\"", "required-scope = \"profile\"");
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "noemail", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    assert_eq!(
        c.expect_line(),
        "NO \"The mail server does not accept this account.\""
    );
    c.send("NOOP\r\n");
    assert_eq!(c.expect_line(), "OK \"Done\"");
    proxy.wait_log("refused noemail");
}

#[test]
fn a_wrong_master_secret_is_trylater_with_an_error_log() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.imap_master_secret = Some("not-the-master-secret".into());
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    let reply = c.expect_line();
    assert!(reply.starts_with("NO (TRYLATER)"), "{reply}");
    proxy.wait_log("refused the proxy's own credentials");
}
