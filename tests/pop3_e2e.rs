//! POP3 end to end: the real Dovecot pop3 (Debian dovecot-pop3d) behind the
//! proxy, the real OpenID provider, real clients (curl, Python poplib,
//! fetchmail) and raw transcripts for the protocol details. Every login
//! that succeeds retrieves the user's real seeded message.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

const ALICE: &str = "alice@example.com";
const ALICE_PASSWORD: &str = "alice-app-password";
const SCOPE: &str = "openid email profile";
const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.";

fn welcome(user: &str) -> String {
    format!("Welcome {user}")
}

/// curl retrieving message 1 with `--oauth2-bearer` (curl picks OAUTHBEARER).
fn curl_pop3(peers: &Peers, url: &str, token: &str, extra: &[&str]) -> std::process::Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(peers.ca())
        .arg(url)
        .arg("-u")
        .arg(format!("{ALICE}:"))
        .arg("--oauth2-bearer")
        .arg(token)
        .args(extra))
}

/// tests/clients/pop3_client.py (poplib); `secret` is the token, or the
/// password for `USER`.
fn poplib(peers: &Peers, port: u16, tls: &str, mech: &str, secret: &str, extra: &[&str]) -> Value {
    let secret_flag = if mech == "USER" {
        "--password"
    } else {
        "--token"
    };
    let out = run(Command::new("python3")
        .arg(python_client("pop3_client.py"))
        .args([
            "--port",
            &port.to_string(),
            "--tls",
            tls,
            "--ca",
            &peers.ca(),
        ])
        .args(["--mech", mech, "--user", ALICE])
        .arg(format!("{secret_flag}={secret}"))
        .args(extra));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "pop3_client.py: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A TLS connection to the implicit-TLS POP3 listener, greeting read.
fn pop3s(peers: &Peers, proxy: &Proxy) -> Raw {
    let mut c = Raw::connect(proxy.port("pop3s"), true, &peers.ca());
    let greeting = c.expect_line();
    assert_eq!(greeting, "+OK proxy.test ready.");
    c
}

/// STAT and RETR 1 on a logged-in session: the seeded message is there.
fn retrieve_welcome(c: &mut Raw, user: &str) {
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

fn challenge_json(line: &str) -> Value {
    let b = line
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("not a challenge: {line}"));
    serde_json::from_slice(&b64_decode(b)).expect("challenge JSON")
}

/// An OAUTHBEARER login the proxy refuses: the RFC 7628 error challenge,
/// answered with the dummy response, then `-ERR [AUTH]`.
fn refused_oauthbearer(c: &mut Raw, user: Option<&str>, token: &str) -> Value {
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(user, token)
    ));
    let challenge = challenge_json(&c.expect_line());
    c.send("AQ==\r\n");
    assert_eq!(c.expect_line(), AUTH_FAILED);
    challenge
}

#[test]
fn curl_oauthbearer_over_pop3s_and_stls_retrieves_the_message() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let pop3s = format!("pop3s://localhost:{}/1", proxy.port("pop3s"));
    let stls = format!("pop3://localhost:{}/1", proxy.port("pop3"));
    for (url, extra) in [(&pop3s, &[][..]), (&stls, &["--ssl-reqd"][..])] {
        let out = curl_pop3(&peers, url, &token, extra);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && body.contains(&format!("Subject: {}", welcome(ALICE))),
            "{url}: {body}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
    }
    proxy.wait_log("listener=pop3 client=127.0.0.1");
    assert!(proxy
        .log()
        .contains("mechanism=\"OAUTHBEARER\" user=\"alice@example.com\" result=\"relayed\""));
}

#[test]
fn poplib_both_mechanisms_with_sasl_ir_and_with_continuation() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    for (port, tls) in [
        (proxy.port("pop3s"), "implicit"),
        (proxy.port("pop3"), "starttls"),
    ] {
        for mech in ["XOAUTH2", "OAUTHBEARER"] {
            for extra in [&[][..], &["--continuation"][..]] {
                let r = poplib(&peers, port, tls, mech, &token, extra);
                assert_eq!(
                    r["ok"],
                    true,
                    "{tls} {mech} {extra:?}: {r}\n{}",
                    proxy.log()
                );
                assert_eq!(r["subjects"], serde_json::json!([welcome(ALICE)]), "{r}");
                let capa = r["capa"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| r["capa"].to_string());
                assert!(capa.contains("SASL") && !capa.contains("STLS"), "{capa}");
            }
        }
    }
    // A refused token reaches poplib as the error challenge and -ERR [AUTH].
    let r = poplib(
        &peers,
        proxy.port("pop3s"),
        "implicit",
        "XOAUTH2",
        "bad-token",
        &[],
    );
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("[AUTH]"), "{r}");
    assert!(
        r["challenge"].as_str().unwrap().contains("\"status\""),
        "{r}"
    );
}

/// fetchmail (Debian's 6.4 has no OAuth mechanism): USER/PASS passthrough
/// over implicit TLS and over STLS, delivering into a file.
#[test]
fn fetchmail_passthrough_retrieves_the_message() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (port, tls) in [
        (proxy.port("pop3s"), "ssl"),
        (proxy.port("pop3"), "sslproto 'TLS1.2+'"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let rc = dir.path().join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "poll localhost protocol pop3 port {port} auth password timeout 20\n  user \"{ALICE}\" password \"{ALICE_PASSWORD}\" is root here\n  {tls} sslcertck sslcertfile \"{}\"\n  keep mda \"/bin/sh -c 'cat >> {}'\"\n",
                peers.ca(),
                out.display()
            ),
        )
        .expect("rc");
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let run = run(Command::new("timeout")
            .args(["60", "fetchmail", "-N", "--nosyslog", "-v", "-f"])
            .arg(&rc)
            .env("HOME", dir.path())
            .env("FETCHMAILHOME", dir.path()));
        let mail = std::fs::read_to_string(&out).unwrap_or_default();
        assert!(
            mail.contains(&format!("Subject: {}", welcome(ALICE))),
            "fetchmail over {tls}: {}{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
            proxy.log()
        );
    }
    // Both sessions were USER/PASS logins relayed by the proxy.
    let relayed = "mechanism=\"USER\" user=\"alice@example.com\" result=\"relayed\"";
    let log = proxy.wait_log(relayed);
    assert_eq!(log.matches(relayed).count(), 2, "{log}");
}

#[test]
fn sasl_ir_transcript_relays_dovecots_reply_and_pipelined_commands() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = pop3s(&peers, &proxy);
    c.send("CAPA\r\n");
    let capa = c.until(".");
    assert!(
        capa.contains(&"SASL OAUTHBEARER XOAUTH2 PLAIN LOGIN".to_string()),
        "{capa:?}"
    );
    assert!(capa.contains(&"USER".to_string()) && !capa.contains(&"STLS".to_string()));
    c.send("AUTH\r\n");
    assert_eq!(
        c.until("."),
        ["+OK", "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN", "."]
    );
    // The initial response and STAT in one write: STAT reaches Dovecot.
    c.send(&format!(
        "AUTH XOAUTH2 {}\r\nSTAT\r\n",
        xoauth2(ALICE, &token)
    ));
    assert_eq!(c.expect_line(), "+OK Logged in.");
    assert!(c.expect_line().starts_with("+OK 1 "));
    retrieve_welcome(&mut c, ALICE);
}

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
    let admin = peers.str(&["oidc", "admin"]);
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(serde_json::json!({ "token": revoked }).to_string())
        .arg(format!("{admin}/revoke")));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"revoked\":true"),
        "{out:?}"
    );
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
fn password_passthrough_user_pass_and_auth_plain() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = pop3s(&peers, &proxy);
    c.send("PASS nothing\r\n");
    assert_eq!(c.expect_line(), "-ERR No username given.");
    c.send(&format!("USER {ALICE}\r\nPASS wrong-password\r\n"));
    assert_eq!(c.expect_line(), "+OK");
    assert_eq!(c.expect_line(), AUTH_FAILED);
    c.send(&format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0{ALICE}\0{ALICE_PASSWORD}").as_bytes())
    ));
    assert_eq!(c.expect_line(), "+OK Logged in.");
    retrieve_welcome(&mut c, ALICE);
    let r = poplib(
        &peers,
        proxy.port("pop3"),
        "starttls",
        "USER",
        ALICE_PASSWORD,
        &[],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["subjects"], serde_json::json!([welcome(ALICE)]));
}

#[test]
fn a_token_as_the_pass_password_logs_in_with_password_tokens() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.passthrough = false;
    opts.listener_extra = "password-tokens = true\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = pop3s(&peers, &proxy);
    c.send(&format!("USER {ALICE}\r\nPASS {token}\r\n"));
    assert_eq!(c.expect_line(), "+OK");
    assert_eq!(c.expect_line(), "+OK Logged in.");
    retrieve_welcome(&mut c, ALICE);
}

#[test]
fn dovecot_sees_the_real_client_address() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect_from("127.0.0.9", proxy.port("pop3s"), true, &peers.ca());
    c.expect_line();
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(c.expect_line(), "+OK Logged in.");
    let log_path = peers.str(&["dovecot", "log"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log
            .lines()
            .any(|l| l.contains("pop3-login") && l.contains("rip=127.0.0.9"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Dovecot never logged rip=127.0.0.9:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
