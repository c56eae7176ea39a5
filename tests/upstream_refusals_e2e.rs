//! An upstream refusing the login (issue 11, finding 5): a user it does not
//! accept is an authentication failure for the client (counted, delayed),
//! while the proxy's own credentials refused stay a temporary failure with
//! a loud log. Against the real Dovecot and Postfix.
//!
//! Dovecot 2.3 answers a wrong master secret and a user name outside
//! `auth_username_chars` with the same `NO [AUTHENTICATIONFAILED]`; the
//! proxy tells them apart with a second master login (src/upstream/imap.rs).

mod common;
use common::*;

const SCOPE: &str = "openid email profile";
/// The provider's account `tagged` (provider.mjs): `+` is not in Dovecot's
/// default auth_username_chars.
const TAGGED: &str = "alice+tag@example.com";
const REFUSED: &str = "NO [AUTHENTICATIONFAILED] The mail server does not accept this account.";

fn login(c: &mut Raw, tag: &str, token: &str) -> String {
    c.send(&format!(
        "{tag} AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
    ));
    c.expect_line()
}

/// Connects from `source`: each test is its own client address, because
/// Dovecot's authentication penalty (up to 15 s) follows the address the
/// proxy reports for the client, and these tests fail logins on purpose.
fn connect(peers: &Peers, proxy: &Proxy, source: &str) -> Raw {
    let mut c = Raw::connect_from(source, proxy.port("imaps"), true, &peers.ca());
    assert!(c.expect_line().starts_with("* OK"));
    c
}

#[test]
fn a_user_name_dovecot_does_not_allow_is_an_authentication_failure() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    // Two, not three: Dovecot itself delays each refusal from one address
    // more (5 s, then 8 s here), and the client reads for 15 s at most.
    opts.max_auth_failures = 2;
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "tagged", SCOPE, 300);
    let mut c = connect(&peers, &proxy, "127.0.0.61");
    // Counted: the second failure ends the connection.
    for tag in ["a", "b"] {
        let reply = login(&mut c, tag, &token);
        assert_eq!(reply, format!("{tag} {REFUSED}"), "{}", proxy.log());
    }
    assert!(c.expect_line().starts_with("* BYE"));
    assert!(c.line().is_none(), "closed after two failures");
    let log = proxy.wait_log(&format!("upstream dovecot refused {TAGGED}"));
    assert!(!log.contains("temporary failure"), "{log}");
    // The same proxy still logs alice in: the master secret is fine.
    let mut c = connect(&peers, &proxy, "127.0.0.62");
    let reply = login(&mut c, "a", &mint_token(&peers, "alice", SCOPE, 300));
    assert!(reply.starts_with("a OK"), "{reply}");
}

#[test]
fn a_wrong_master_secret_stays_a_temporary_failure_with_a_loud_log() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.imap_master_secret = Some("not-the-master-secret-77".into());
    opts.max_auth_failures = 2;
    let proxy = Proxy::start(&peers, &opts);
    let mut c = connect(&peers, &proxy, "127.0.0.63");
    // Never counted: three tries on one connection with max-auth-failures
    // 2, no BYE (few: Dovecot delays each refusal from one address more).
    for (tag, sub) in [("a", "alice"), ("b", "tagged"), ("c", "bob")] {
        let reply = login(&mut c, tag, &mint_token(&peers, sub, SCOPE, 300));
        assert!(
            reply.starts_with(&format!("{tag} NO [UNAVAILABLE]")),
            "{sub}: {reply}\n{}",
            proxy.log()
        );
    }
    let log = proxy.wait_log("upstream dovecot refused the proxy's own credentials");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("refused the proxy's own credentials")),
        "{log}"
    );
    assert!(!log.contains("not-the-master-secret-77"), "secret logged");
}

#[test]
fn smtp_a_user_name_postfix_does_not_accept_is_535() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    // The account `long` has an address of 112 bytes, 312 characters in
    // xtext: Postfix answers XCLIENT LOGIN= with `501 5.5.4 Error:
    // attribute value too long` (its limit is 255).
    let token = mint_token(&peers, "long", SCOPE, 300);
    let mut raw = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert_eq!(raw.expect_line(), "220 proxy.test ESMTP");
    raw.send("EHLO raw.example\r\n");
    raw.until("250 ");
    for _ in 0..2 {
        raw.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(None, &token)
        ));
        let reply = raw.expect_line();
        assert!(reply.starts_with("535 5.7.8 "), "{reply}\n{}", proxy.log());
    }
    proxy.wait_log("attribute value too long");
}
