//! Helpers of the ManageSieve end-to-end tests: raw transcript sessions on
//! the proxy's listeners "sieve" (STARTTLS) and "sieve-tls" (implicit TLS).
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

pub const ALICE: &str = "alice@example.com";
pub const SCOPE: &str = "openid email profile";

/// A TLS session on the implicit-TLS listener, its greeting read.
pub fn sieve_tls(peers: &Peers, proxy: &Proxy) -> (Raw, Vec<String>) {
    let mut c = Raw::connect(proxy.port("sieve-tls"), true, &peers.ca());
    let greeting = c.until("OK");
    (c, greeting)
}

/// A session on the STARTTLS listener after STARTTLS; returns the
/// capabilities the proxy re-sent under TLS.
pub fn sieve_starttls(peers: &Peers, proxy: &Proxy) -> (Raw, Vec<String>) {
    let mut c = Raw::connect(proxy.port("sieve"), false, &peers.ca());
    c.until("OK");
    c.send("STARTTLS\r\n");
    assert_eq!(c.expect_line(), "OK \"Begin TLS negotiation now.\"");
    c.upgrade();
    let caps = c.until("OK");
    (c, caps)
}

/// `"<base64>"`, or `{n+}\r\n<base64>` when `literal`.
pub fn string(b64: &str, literal: bool) -> String {
    if literal {
        format!("{{{}+}}\r\n{b64}", b64.len())
    } else {
        format!("\"{b64}\"")
    }
}

/// The JSON of an RFC 7628 error challenge sent as a quoted string.
pub fn challenge_json(line: &str) -> Value {
    let b = line
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a challenge string: {line}"));
    serde_json::from_slice(&b64_decode(b)).expect("challenge JSON")
}

/// A login with `mech` whose initial response is `b64`, expected to succeed.
pub fn login(c: &mut Raw, mech: &str, b64: &str, literal: bool) {
    c.send(&format!(
        "AUTHENTICATE \"{mech}\" {}\r\n",
        string(b64, literal)
    ));
    let reply = c.expect_line();
    assert!(reply.starts_with("OK"), "{mech} literal={literal}: {reply}");
}

/// A refused bearer login: the error challenge (returned), the dummy
/// answer, then `NO`.
pub fn refused(c: &mut Raw, mech: &str, b64: &str) -> Value {
    c.send(&format!("AUTHENTICATE \"{mech}\" \"{b64}\"\r\n"));
    let challenge = challenge_json(&c.expect_line());
    c.send(if mech == "XOAUTH2" {
        "\"\"\r\n"
    } else {
        "\"AQ==\"\r\n"
    });
    assert_eq!(c.expect_line(), "NO \"Authentication failed.\"");
    challenge
}

pub fn revoke(peers: &Peers, token: &str) {
    let body = serde_json::json!({ "token": token }).to_string();
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", "POST"])
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg(format!("{}/revoke", peers.str(&["oidc", "admin"]))));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("true"),
        "revoking failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("sieve-e2e-{tag}-{nanos}")
}

/// Waits (bounded) until Dovecot logs a managesieve-login `Login:` line
/// containing `needle` (e.g. `rip=127.0.0.9`: the address it saw).
pub fn wait_login_logged(peers: &Peers, needle: &str) {
    let log_path = peers.str(&["dovecot", "log"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let seen = log
            .lines()
            .any(|l| l.contains("managesieve-login") && l.contains("Login:") && l.contains(needle));
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Dovecot never logged a ManageSieve login with {needle}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
