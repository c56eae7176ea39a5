//! Helpers shared by the POP3 end-to-end tests (tests/pop3_e2e.rs,
//! tests/pop3_refusals_e2e.rs): raw transcripts against the proxy's POP3
//! listeners.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;

pub const ALICE: &str = "alice@example.com";
pub const ALICE_PASSWORD: &str = "alice-app-password";
pub const SCOPE: &str = "openid email profile";
pub const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.";

pub fn welcome(user: &str) -> String {
    format!("Welcome {user}")
}

/// A TLS connection to the implicit-TLS POP3 listener, greeting read.
pub fn pop3s(peers: &Peers, proxy: &Proxy) -> Raw {
    let mut c = Raw::connect(proxy.port("pop3s"), true, &peers.ca());
    let greeting = c.expect_line();
    assert_eq!(greeting, "+OK proxy.test ready.");
    c
}

/// STAT and RETR 1 on a logged-in session: the seeded message is there.
pub fn retrieve_welcome(c: &mut Raw, user: &str) {
    c.send("STAT\r\nRETR 1\r\n");
    let stat = c.expect_line();
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    let message = c.until(".");
    assert!(
        message
            .iter()
            .any(|l| l == &format!("Subject: {}", welcome(user))),
        "{message:?}"
    );
    c.send("QUIT\r\n");
    assert!(c.expect_line().starts_with("+OK"));
}

pub fn challenge_json(line: &str) -> Value {
    let b = line
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("not a challenge: {line}"));
    serde_json::from_slice(&b64_decode(b)).expect("challenge JSON")
}

/// An OAUTHBEARER login the proxy refuses: the RFC 7628 error challenge,
/// answered with the dummy response, then `-ERR [AUTH]`.
pub fn refused_oauthbearer(c: &mut Raw, user: Option<&str>, token: &str) -> Value {
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(user, token)
    ));
    let challenge = challenge_json(&c.expect_line());
    c.send("AQ==\r\n");
    assert_eq!(c.expect_line(), AUTH_FAILED);
    challenge
}

/// Waits (bounded) until the proxy's log holds `needle` `n` times.
pub fn wait_count(proxy: &Proxy, needle: &str, n: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = proxy.log();
        if log.matches(needle).count() >= n {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {n} times {needle:?}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
