//! What the provider's answers mean (issue 11, finding 4), through the real
//! proxy: where the user's token is the credential (UserInfo, introspection
//! with `user-token`) a refusal is a refused token (error challenge, then
//! `NO [AUTHENTICATIONFAILED]` / `535 5.7.8`, counted); where the proxy's
//! own credential is, a refusal is the proxy's misconfiguration (temporary
//! failure, a log line naming the directory).
//!
//! Against the real OpenID provider; answers it cannot give (a 5xx, a 404,
//! an odd status with `WWW-Authenticate`) come from an in-process fake.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";
const FAILED: &str = "a NO [AUTHENTICATIONFAILED]";
const UNAVAILABLE: &str = "a NO [UNAVAILABLE]";
const INVALID: &str = "535 5.7.8 Authentication credentials invalid";

fn introspect_directory(url: &str, auth: &str) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{url}\"\nendpoint.method = \"introspect\"\nrequired-scope = \"email\"\n{auth}fields.email = \"email\"\nfields.username = \"username\"\n"
    )
}

fn user_token_proxy(peers: &Peers) -> Proxy {
    let mut opts = ProxyOptions::new(peers);
    opts.directory = introspect_directory(
        &peers.str(&["oidc", "introspection"]),
        "auth.method = \"user-token\"\n",
    );
    Proxy::start(peers, &opts)
}

/// Revokes an opaque token at the provider (`POST /revoke` on its admin port).
fn revoke(peers: &Peers, token: &str) {
    let admin = peers.str(&["oidc", "admin"]);
    let body = serde_json::json!({ "token": token }).to_string();
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", "POST", "-d"])
        .arg(&body)
        .arg(format!("{admin}/revoke")));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("revoke JSON");
    assert_eq!(v["revoked"], true, "{v}");
}

/// One IMAP OAUTHBEARER login on `c` (greeting already read): the lines
/// after AUTHENTICATE, a challenge answered with `AQ==`.
fn imap_attempt(c: &mut Raw, tag: &str, token: &str) -> Vec<String> {
    c.send(&format!(
        "{tag} AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), token)
    ));
    let mut lines = Vec::new();
    loop {
        let l = c.expect_line();
        lines.push(l.clone());
        if l.starts_with("+ ") {
            c.send("AQ==\r\n");
        } else if l.starts_with(&format!("{tag} ")) {
            return lines;
        }
    }
}

fn connect(peers: &Peers, proxy: &Proxy) -> Raw {
    let mut c = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
    assert!(c.expect_line().starts_with("* OK"));
    c
}

/// The error challenge's JSON status.
fn challenge_status(line: &str) -> String {
    let json = b64_decode(line.strip_prefix("+ ").unwrap_or(line));
    let v: serde_json::Value = serde_json::from_slice(&json).expect("challenge JSON");
    v["status"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_revoked_token_on_a_user_token_directory_is_refused_not_unavailable() {
    let peers = peers_read();
    let proxy = user_token_proxy(&peers);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = connect(&peers, &proxy);
    let lines = imap_attempt(&mut c, "a", &token);
    assert!(lines[0].starts_with("a OK"), "{lines:?}\n{}", proxy.log());
    revoke(&peers, &token);
    let mut c = connect(&peers, &proxy);
    let lines = imap_attempt(&mut c, "a", &token);
    assert_eq!(lines.len(), 2, "{lines:?}\n{}", proxy.log());
    assert_eq!(challenge_status(&lines[0]), "invalid_token", "{lines:?}");
    assert!(lines[1].starts_with(FAILED), "{lines:?}");
    proxy.wait_log("introspection answered 401 (invalid_token)");
}

#[test]
fn a_garbage_token_on_a_user_token_directory_is_refused_and_counted() {
    let peers = peers_read();
    let proxy = user_token_proxy(&peers);
    let mut c = connect(&peers, &proxy);
    // max-auth-failures is 3 in the test configuration.
    for tag in ["a", "b", "c"] {
        let lines = imap_attempt(&mut c, tag, "garbage-token-0123");
        assert!(lines[0].starts_with("+ "), "{lines:?}\n{}", proxy.log());
        assert!(
            lines[1].starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED]")),
            "{lines:?}"
        );
    }
    assert!(c.expect_line().starts_with("* BYE"));
    assert!(c.line().is_none(), "closed after three failures");
    assert!(!proxy.log().contains("garbage-token-0123"), "token logged");
}

#[test]
fn a_wrong_basic_secret_is_unavailable_and_the_log_names_the_directory() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = introspect_directory(
        &peers.str(&["oidc", "introspection"]),
        "auth.method = \"basic\"\nauth.username = \"mail-proxy\"\nauth.secret = \"wrong-secret-5a1\"\n",
    );
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = connect(&peers, &proxy);
    // Not a failure the client caused: never counted, never a BYE.
    for tag in ["a", "b", "c", "d"] {
        let lines = imap_attempt(&mut c, tag, &token);
        assert_eq!(lines.len(), 1, "no error challenge: {lines:?}");
        assert!(
            lines[0].starts_with(&format!("{tag} NO [UNAVAILABLE]")),
            "{lines:?}"
        );
    }
    let log = proxy.wait_log(
        "temporary failure: directory test: the provider refused the proxy's own credentials; check auth.*",
    );
    assert!(log.contains("ERROR"), "{log}");
    assert!(!log.contains("wrong-secret-5a1"), "the secret was logged");
}

#[test]
fn smtp_a_revoked_token_on_a_user_token_directory_gets_535() {
    let peers = peers_read();
    let proxy = user_token_proxy(&peers);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    revoke(&peers, &token);
    let mut raw = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert_eq!(raw.expect_line(), "220 proxy.test ESMTP");
    raw.send("EHLO raw.example\r\n");
    raw.until("250 ");
    raw.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), &token)
    ));
    let challenge = raw.expect_line();
    let json = b64_decode(challenge.strip_prefix("334 ").expect("error challenge"));
    let v: serde_json::Value = serde_json::from_slice(&json).expect("challenge JSON");
    assert_eq!(v["status"], "invalid_token", "{v}");
    raw.send("AQ==\r\n");
    assert_eq!(raw.expect_line(), INVALID);
}

/// An in-process HTTP endpoint answering every request with `status` and
/// the extra header lines `headers` (fault injection only).
fn fake_endpoint(status: u16, headers: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(&tcp);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n{headers}\r\n{{}}"
                );
                let _ = (&tcp).write_all(reply.as_bytes());
            });
        }
    });
    port
}

#[test]
fn answers_the_provider_cannot_be_made_to_give() {
    let peers = peers_read();
    const INVALID_TOKEN: &str = "www-authenticate: Bearer error=\"invalid_token\"\r\n";
    // (method, auth, status, header, what the client gets)
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        ("introspect", "user-token", 500, "", UNAVAILABLE),
        ("introspect", "user-token", 503, "", UNAVAILABLE),
        ("introspect", "user-token", 429, "", UNAVAILABLE),
        ("introspect", "user-token", 404, "", UNAVAILABLE),
        ("introspect", "user-token", 403, "", FAILED),
        ("introspect", "user-token", 400, INVALID_TOKEN, FAILED),
        ("introspect", "none", 401, INVALID_TOKEN, UNAVAILABLE),
        ("introspect", "none", 413, "", FAILED),
        ("userinfo", "none", 404, "", UNAVAILABLE),
        ("userinfo", "none", 404, INVALID_TOKEN, FAILED),
        ("userinfo", "none", 502, "", UNAVAILABLE),
        ("userinfo", "none", 431, "", FAILED),
    ];
    for (method, auth, status, header, want) in cases {
        let url = format!("http://127.0.0.1:{}/x", fake_endpoint(*status, header));
        let mut opts = ProxyOptions::new(&peers);
        opts.directory = format!(
            "type = \"oidc\"\ntimeout = \"3s\"\nendpoint.url = \"{url}\"\nendpoint.method = \"{method}\"\nauth.method = \"{auth}\"\nrequired-scope = \"email\"\nfields.email = \"email\"\n"
        );
        let proxy = Proxy::start(&peers, &opts);
        let mut c = connect(&peers, &proxy);
        let lines = imap_attempt(&mut c, "a", "fake-token-0123");
        let what = format!("{method} {auth} {status} {header:?}");
        assert!(
            lines.last().is_some_and(|l| l.starts_with(want)),
            "{what}: {lines:?}\n{}",
            proxy.log()
        );
        // A refusal comes with the error challenge, a temporary failure without.
        assert_eq!(lines.len(), if *want == FAILED { 2 } else { 1 }, "{what}");
    }
}
