//! Real mail clients through the proxy under test: Python's imaplib
//! (tests/clients/imap_client.py) and smtplib (tests/clients/smtp_client.py).

use super::{python_client, run, Peers, Proxy};
use serde_json::Value;
use std::process::{Command, Output};
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

/// How smtplib authenticates.
pub struct SmtpLogin<'a> {
    /// `oauthbearer`, `xoauth2`, `plain` or `login`.
    pub mode: &'a str,
    /// The token or the password.
    pub secret: &'a str,
    /// Whether the first response goes with AUTH (SASL-IR) or after `334`.
    pub initial_response: bool,
}

/// Python smtplib (tests/clients/smtp_client.py) through the proxy's
/// `listener` (implicit TLS or STARTTLS): logs in as `user`, sends bob a
/// message with `subject`. Its stdout says `SENT`, or `ERROR code text`.
pub fn smtplib(
    peers: &Peers,
    proxy: &Proxy,
    (listener, implicit): (&str, bool),
    user: &str,
    login: SmtpLogin<'_>,
    subject: &str,
) -> Output {
    run(Command::new("timeout")
        .args(["-k", "5", "60", "python3"])
        .arg(python_client("smtp_client.py"))
        .arg(proxy.port(listener).to_string())
        .arg(if implicit { "1" } else { "0" })
        .args([user, login.mode, login.secret, &peers.ca(), subject])
        .arg(if login.initial_response { "1" } else { "0" }))
}

/// smtplib's `AUTH PLAIN` as `user` through the `submissions` listener,
/// then a message to bob with `subject`; its output (`SENT`, or `ERROR
/// code text`).
pub fn smtplib_send(
    peers: &Peers,
    proxy: &Proxy,
    user: &str,
    password: &str,
    subject: &str,
) -> String {
    let login = SmtpLogin {
        mode: "plain",
        secret: password,
        initial_response: true,
    };
    let out = smtplib(peers, proxy, ("submissions", true), user, login, subject);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
