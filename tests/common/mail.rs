//! Real mail clients through the proxy under test: Python's imaplib
//! (tests/clients/imap_client.py) and smtplib.

use super::{python_client, run, Peers, Proxy};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Python imaplib's own LOGIN through the proxy's `imaps` listener
/// (tests/clients/imap_client.py); its JSON result.
pub fn imaplib_login(peers: &Peers, proxy: &Proxy, user: &str, password: &str) -> Value {
    imaplib(
        peers,
        proxy,
        &["--mech", "LOGIN", "--user", user, "--password", password],
    )
}

/// imaplib's own `AUTHENTICATE OAUTHBEARER` with `token` as `user`.
pub fn imaplib_token(peers: &Peers, proxy: &Proxy, user: &str, token: &str) -> Value {
    imaplib(
        peers,
        proxy,
        &["--mech", "OAUTHBEARER", "--user", user, "--token", token],
    )
}

fn imaplib(peers: &Peers, proxy: &Proxy, args: &[&str]) -> Value {
    client_json(
        peers,
        "imap_client.py",
        proxy.port("imaps"),
        "implicit",
        args,
    )
}

/// Runs a client of tests/clients (`--port`, `--tls`, `--ca`, then
/// `args`) and parses the one JSON line it prints.
pub fn client_json(peers: &Peers, script: &str, port: u16, tls: &str, args: &[&str]) -> Value {
    let out = run(Command::new("python3")
        .arg(python_client(script))
        .args(["--port", &port.to_string(), "--tls", tls, "--ca"])
        .arg(peers.ca())
        .args(args));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Reads the mailbox with `read` until a message with `subject` is there
/// (delivery through Postfix and LMTP is asynchronous); panics after 30 s.
pub fn wait_for_subject(subject: &str, read: impl Fn() -> Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = read();
        assert_eq!(r["ok"], true, "{r}");
        if r["subjects"].to_string().contains(subject) {
            return;
        }
        assert!(Instant::now() < deadline, "{subject:?} never arrived: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
port, user, password, ca, subject = sys.argv[1:6]
s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca), timeout=30)
s.ehlo("python.example")
try:
    s.user, s.password = user, password
    s.auth("PLAIN", s.auth_plain)
    msg = f"From: {user}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\r\nSent with an app password.\r\n"
    s.sendmail(user, ["bob@example.com"], msg)
    print("SENT")
    s.quit()
except smtplib.SMTPException as e:
    print("ERROR", getattr(e, "smtp_code", ""), getattr(e, "smtp_error", e))
"#;

/// Python smtplib: `AUTH PLAIN` as `user` through the proxy's
/// `submissions` listener, then a message to bob with `subject`; its
/// output (`SENT`, or `ERROR code text`).
pub fn smtplib_send(
    peers: &Peers,
    proxy: &Proxy,
    user: &str,
    password: &str,
    subject: &str,
) -> String {
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(SMTPLIB)
        .arg(proxy.port("submissions").to_string())
        .args([user, password, &peers.ca(), subject]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
