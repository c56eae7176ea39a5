//! Shared by the several-backends tests: the peers with a second Dovecot,
//! a proxy configuration whose upstreams are groups of both Dovecots, and
//! short raw-protocol clients that say which backend served a mailbox.
#![allow(dead_code)]

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

pub const SCOPE: &str = "openid email profile";

/// The peers with `dovecot2` (peers.py --second-dovecot).
pub fn two_dovecots() -> PeersRead {
    PEERS_ARGS.get_or_init(|| vec!["--second-dovecot"]);
    peers_read()
}

pub fn two_dovecots_exclusive() -> PeersExclusive {
    PEERS_ARGS.get_or_init(|| vec!["--second-dovecot"]);
    peers_exclusive()
}

/// The subject of the message seeded for `email` on `dovecot` or `dovecot2`.
pub fn welcome(peers: &Peers, dovecot: &str, email: &str) -> String {
    peers.str(&[dovecot, "welcome"]).replace("{email}", email)
}

/// Listener ports of one proxy's group listeners.
pub struct GroupPorts {
    pub imap: u16,
    pub pop3: u16,
    pub smtp: u16,
}

impl GroupPorts {
    pub fn new() -> Self {
        Self {
            imap: free_port(),
            pop3: free_port(),
            smtp: free_port(),
        }
    }
}

/// TOML for `ProxyOptions::extra`: plaintext IMAP, POP3 and SMTP listeners
/// whose upstreams are groups: `mail` (IMAP) and `mail-pop3` of both
/// Dovecots as `mail1` and `mail2` with `routing`, and `relay` of Postfix
/// and a port nothing listens on. `proxy_protocol`: the listeners take a
/// PROXY header from 127.0.0.1 (behind HAProxy).
pub fn group_config(
    peers: &Peers,
    ports: &GroupPorts,
    routing: &str,
    proxy_protocol: bool,
) -> String {
    let pp = if proxy_protocol {
        "proxy-protocol = true\nproxy-trusted-networks = [\"127.0.0.1/32\"]\n"
    } else {
        ""
    };
    let listener = |name: &str, proto: &str, port: u16, up: &str| {
        format!(
            "[listener.{name}]\nprotocol = \"{proto}\"\nbind = \"127.0.0.1:{port}\"\ntls = \"none\"\ndirectory = \"test\"\nupstream = \"{up}\"\n{pp}\n"
        )
    };
    let group = |name: &str, proto: &str, port: &str| {
        format!(
            "[upstream.{name}]\nprotocol = \"{proto}\"\nbackends = [ {{ name = \"mail1\", address = \"127.0.0.1:{}\" }},\n  {{ name = \"mail2\", address = \"127.0.0.1:{}\" }} ]\n{routing}\nhealth.interval = \"500ms\"\nhealth.timeout = \"400ms\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"%{{file:{}}}%\"\nidentity = \"email\"\nconnect-timeout = \"5s\"\n\n",
            peers.port(&["dovecot", port]),
            peers.port(&["dovecot2", port]),
            peers.str(&["dovecot", "master_user"]),
            peers.str(&["dovecot", "master_secret_file"]),
        )
    };
    let relay = format!(
        "[upstream.relay]\nbackends = [ {{ name = \"postfix\", address = \"127.0.0.1:{}\" }},\n  {{ name = \"nowhere\", address = \"127.0.0.1:{}\" }} ]\nhealth.interval = \"500ms\"\nhealth.timeout = \"400ms\"\ntls = \"none\"\nlogin.method = \"xclient\"\nidentity = \"email\"\nconnect-timeout = \"5s\"\n\n",
        peers.port(&["postfix", "smtp_port"]),
        free_port(),
    );
    [
        listener("group-imap", "imap", ports.imap, "mail"),
        listener("group-pop3", "pop3", ports.pop3, "mail-pop3"),
        listener("group-smtp", "smtp", ports.smtp, "relay"),
        group("mail", "imap", "imap_port"),
        group("mail-pop3", "pop3", "pop3_port"),
        relay,
    ]
    .concat()
}

/// A proxy with the group listeners (`routing`: `routing.*` lines).
pub fn start_proxy(peers: &Peers, routing: &str) -> (Proxy, GroupPorts) {
    let ports = GroupPorts::new();
    let mut opts = ProxyOptions::new(peers);
    opts.extra = group_config(peers, &ports, routing, false);
    (Proxy::start(peers, &opts), ports)
}

/// Logs in over IMAP with the token and reads the first message's
/// subject; `Err(the tagged refusal)` when the login fails.
pub fn imap_subject(peers: &Peers, port: u16, token: &str) -> Result<String, String> {
    let mut c = Raw::connect(port, false, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
    ));
    let mut reply = c.expect_line();
    if reply.starts_with("+ ") {
        c.send("AQ==\r\n");
        reply = c.until("a ").pop().unwrap_or_default();
    } else if !reply.starts_with("a ") {
        reply = c.until("a ").pop().unwrap_or_default();
    }
    if !reply.starts_with("a OK") {
        return Err(reply);
    }
    c.send("s EXAMINE INBOX\r\n");
    let _ = c.until("s ");
    c.send("b FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    let lines = c.until("b ");
    c.send("c LOGOUT\r\n");
    let _ = c.until("c ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .ok_or_else(|| format!("no subject in {lines:?}"))
}

/// The POP3 server's answer to `AUTH OAUTHBEARER` with the token.
pub fn pop3_auth(peers: &Peers, port: u16, token: &str) -> String {
    let mut c = Raw::connect(port, false, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
    ));
    let mut reply = c.expect_line();
    if reply.starts_with("+ ") {
        c.send("AQ==\r\n");
        reply = c.expect_line();
    }
    c.send("QUIT\r\n");
    reply
}

/// Sends a message from alice to bob through the proxy's SMTP listener.
pub fn smtp_send(peers: &Peers, port: u16, token: &str, subject: &str) -> Result<(), String> {
    let mut c = Raw::connect(port, false, &peers.ca());
    c.expect_line();
    let steps = [
        ("EHLO client.example\r\n".to_string(), "250 "),
        (
            format!("AUTH OAUTHBEARER {}\r\n", oauthbearer(None, token)),
            "235",
        ),
        ("MAIL FROM:<alice@example.com>\r\n".into(), "250"),
        ("RCPT TO:<bob@example.com>\r\n".into(), "250"),
        ("DATA\r\n".into(), "354"),
        (
            format!("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\r\nhello\r\n.\r\n"),
            "250",
        ),
    ];
    for (send, want) in steps {
        c.send(&send);
        let mut line = c.expect_line();
        while line.starts_with("250-") {
            line = c.expect_line();
        }
        if !line.starts_with(want) {
            return Err(format!("{}: {line}", send.trim_end()));
        }
    }
    c.send("QUIT\r\n");
    Ok(())
}

/// Waits (bounded) until bob's INBOX on the first Dovecot (where Postfix
/// delivers) has a message with `subject`.
pub fn wait_delivered(peers: &Peers, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(Command::new("doveadm")
            .args(["-c", &peers.str(&["dovecot", "config"]), "search"])
            .args([
                "-u",
                "bob@example.com",
                "mailbox",
                "INBOX",
                "subject",
                subject,
            ]));
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{subject:?} was never delivered");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `oauthbearer-proxy route USER` on the proxy's configuration: the first line.
pub fn route(proxy: &Proxy, upstream: &str, user: &str) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
        .arg("--config")
        .arg(&proxy.config_path)
        .args(["route", "--upstream", upstream, user]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "route {user}: {text}");
    text.lines().next().unwrap_or_default().to_string()
}

/// Which Dovecot a backend name is in these configurations.
pub fn dovecot_of(backend: &str) -> &'static str {
    match backend {
        "mail1" => "dovecot",
        "mail2" => "dovecot2",
        other => panic!("no backend {other}"),
    }
}
