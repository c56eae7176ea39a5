//! POP3 end to end: the real Dovecot pop3 (Debian dovecot-pop3d) behind the
//! proxy, the real OpenID provider, real clients (curl, Python poplib,
//! fetchmail) and raw transcripts of logins. Every login that succeeds
//! retrieves the user's real seeded message. Refusals and failures are in
//! tests/pop3_refusals_e2e.rs.

mod common;
#[path = "pop3/helpers.rs"]
mod helpers;
use common::*;
use helpers::*;
use serde_json::Value;
use std::process::Command;

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
    let secret = format!("{secret_flag}={secret}");
    let mut args = vec!["--mech", mech, "--user", ALICE, &secret];
    args.extend_from_slice(extra);
    client_json(peers, "pop3_client.py", port, tls, &args)
}

#[test]
fn curl_oauthbearer_over_pop3s_and_stls_retrieves_the_message() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let pop3s = format!("pop3s://localhost:{}/1", proxy.port("pop3s"));
    let stls = format!("pop3://localhost:{}/1", proxy.port("pop3"));
    // curl 7.88 picks OAUTHBEARER whenever XOAUTH2 is offered too, even
    // with `--login-options AUTH=XOAUTH2` (tried: the log says OAUTHBEARER);
    // XOAUTH2 is driven by poplib below.
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
    let relayed = "mechanism=\"OAUTHBEARER\" user=\"alice@example.com\" result=\"relayed\"";
    wait_count(&proxy, relayed, 2);
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
    wait_count(
        &proxy,
        "mechanism=\"USER\" user=\"alice@example.com\" result=\"relayed\"",
        2,
    );
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

/// An upstream with `tls = "starttls"`: a second proxy in front, whose
/// STLS listener is this proxy's upstream. The first proxy validates the
/// token, upgrades with STLS (verifying the certificate against the test
/// CA) and logs in as the master user; the second relays that AUTH PLAIN
/// (password passthrough) to Dovecot.
#[test]
fn an_upstream_with_stls_is_upgraded_before_the_login() {
    let peers = peers_read();
    let inner = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let port = free_port();
    let mut opts = ProxyOptions::new(&peers);
    opts.extra = format!(
        "[listener.chained]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:{port}\"\ntls = \"implicit\"\ndirectory = \"test\"\nupstream = \"chained\"\n\n[upstream.chained]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:{}\"\ntls = \"starttls\"\ntls-ca = \"{}\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"%{{file:{}}}%\"\nidentity = \"email\"\n",
        inner.port("pop3"),
        peers.ca(),
        peers.str(&["dovecot", "master_user"]),
        peers.str(&["dovecot", "master_secret_file"]),
    );
    let outer = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(port, true, &peers.ca());
    assert_eq!(c.expect_line(), "+OK proxy.test ready.");
    c.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert_eq!(
        c.expect_line(),
        "+OK Logged in.",
        "{}\n{}",
        outer.log(),
        inner.log()
    );
    retrieve_welcome(&mut c, ALICE);
    wait_count(&outer, "listener=chained", 1);
    // The inner proxy saw a PLAIN passthrough on its STLS listener (its log
    // names the authentication identity, the master user).
    let relayed = "listener=pop3 client=127.0.0.1";
    let inner_log = wait_count(&inner, relayed, 1);
    assert!(
        inner_log.contains("mechanism=\"PLAIN\" user=\"proxy\" result=\"relayed\""),
        "{inner_log}"
    );
}
