//! ManageSieve with a real client: Debian's python3-sievelib (which has no
//! OAuth mechanism) logs in through the proxy's STARTTLS listener with
//! `AUTHENTICATE "PLAIN"` and the user's own Dovecot app password, which the
//! proxy passes through, then uploads and lists a script. A token login
//! afterwards sees the same script: it is in Dovecot, in bob's account.
//! A missing sievelib is an ImportError, so the test fails; it never skips.

mod common;
mod managesieve_support;
use common::*;
use managesieve_support::*;
use serde_json::Value;
use std::process::Command;

const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob-app-password";

/// tests/clients/sieve_client.py under Debian's own Python (the `python3`
/// first on PATH may lack Debian's modules).
fn sievelib(port: u16, user: &str, password: &str, script: &str) -> Value {
    let out = run(Command::new("/usr/bin/python3")
        .arg(python_client("sieve_client.py"))
        .args(["--port", &port.to_string(), "--user", user])
        .arg(format!("--password={password}"))
        .args(["--script", script]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "sieve_client.py (is python3-sievelib installed? scripts/install-deps.sh installs it): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn sievelib_plain_passthrough_uploads_and_lists_a_script() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let port = proxy.port("sieve");
    let script = unique("sievelib");

    // A wrong password: Dovecot's refusal reaches the client.
    let refused = sievelib(port, BOB, "not-the-app-password", &script);
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("login:"),
        "{refused}"
    );

    let r = sievelib(port, BOB, BOB_PASSWORD, &script);
    assert_eq!(r["ok"], true, "{r}\n{}", proxy.log());
    // sievelib chose PLAIN from what the proxy offered under TLS.
    let sasl: Vec<&str> = r["sasl"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(sasl, ["OAUTHBEARER", "XOAUTH2", "PLAIN"], "{r}");
    let listed: Vec<&str> = r["scripts"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(listed.contains(&script.as_str()), "{r}");
    let content = r["content"].as_str().unwrap_or("");
    assert!(content.contains("fileinto \"INBOX\""), "{r}");

    // The proxy logged a PLAIN passthrough for bob, never the password.
    let log = proxy.log();
    assert!(
        log.lines().any(|l| l.contains("listener=sieve ")
            && l.contains("mechanism=\"PLAIN\" user=\"bob@example.com\" result=\"relayed\"")),
        "{log}"
    );
    assert!(!log.contains(BOB_PASSWORD), "the password is in the log");

    // The same script, seen by a token login as bob, then removed.
    let token = mint_token(&peers, "bob", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
    c.send("LISTSCRIPTS\r\n");
    let listed = c.until("OK");
    assert!(listed.contains(&format!("\"{script}\"")), "{listed:?}");
    c.send(&format!("DELETESCRIPT \"{script}\"\r\n"));
    assert!(c.expect_line().starts_with("OK"));
    c.send("LOGOUT\r\n");
    assert!(c.expect_line().starts_with("OK"));
}
