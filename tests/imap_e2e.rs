//! IMAP end to end: real Dovecot, the real OpenID provider (npm
//! oidc-provider), real clients (curl, Python imaplib) and raw transcripts
//! for the protocol details.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";

fn curl_imap(
    peers: &Peers,
    url_scheme: &str,
    port: u16,
    user: &str,
    token: &str,
    extra: &[&str],
) -> std::process::Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(peers.ca())
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!(
            "{url_scheme}://localhost:{port}/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%20(SUBJECT)"
        ))
        .arg("-u")
        .arg(format!("{user}:"))
        .arg("--oauth2-bearer")
        .arg(token)
        .args(extra))
}

fn imaplib(peers: &Peers, port: u16, tls: &str, mech: &str, user: &str, secret: &str) -> Value {
    let secret_flag = if mech == "LOGIN" {
        "--password"
    } else {
        "--token"
    };
    let secret = format!("{secret_flag}={secret}");
    client_json(
        peers,
        "imap_client.py",
        port,
        tls,
        &["--mech", mech, "--user", user, &secret],
    )
}

/// A TLS connection to the proxy's implicit-TLS IMAP listener, greeting read.
fn imaps(peers: &Peers, proxy: &Proxy) -> Raw {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    let greeting = c.expect_line();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    c
}

fn welcome(user: &str) -> String {
    format!("Welcome {user}")
}

#[test]
fn implicit_tls_greeting_comes_in_the_servers_first_flight() {
    // TLS 1.3 half-RTT data: the greeting is readable before the client
    // has sent its Finished (one round trip and one write fewer per login).
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let greeting = first_flight_plaintext(proxy.port("imaps"), &peers.ca());
    let greeting = String::from_utf8_lossy(&greeting);
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 ") && greeting.ends_with(" ready.\r\n"),
        "first flight carried {greeting:?}"
    );
    assert!(greeting.contains("AUTH=OAUTHBEARER"), "{greeting}");
    // The session goes on normally from there: one greeting, not two.
    let mut c = imaps(&peers, &proxy);
    c.send("a NOOP\r\n");
    assert_eq!(c.expect_line(), "a OK NOOP completed.");
}

#[test]
fn sessions_run_on_the_configured_worker_threads() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = "workers = 3\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", proxy.pid()))
        .expect("task list")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("session-"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["session-0", "session-1", "session-2"], "{names:?}");
    // Several sessions at once, all served (whichever worker accepts).
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut clients: Vec<Raw> = (0..6).map(|_| imaps(&peers, &proxy)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!(
            "a{i} AUTHENTICATE OAUTHBEARER {}\r\n",
            oauthbearer(None, &token)
        ));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let lines = c.until(&format!("a{i} "));
        assert!(
            lines.last().unwrap().starts_with(&format!("a{i} OK")),
            "{lines:?}"
        );
    }
}

#[test]
fn tls_sessions_resume_from_tickets_unless_turned_off() {
    use rustls::HandshakeKind::{Full, Resumed};
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    assert_eq!(
        handshake_kinds(proxy.port("imaps"), &peers.ca()),
        [Full, Resumed]
    );
    let mut opts = ProxyOptions::new(&peers);
    opts.tls_extra = "session-tickets = 0\n".into();
    let proxy = Proxy::start(&peers, &opts);
    assert_eq!(
        handshake_kinds(proxy.port("imaps"), &peers.ca()),
        [Full, Full]
    );
}

#[test]
fn curl_oauthbearer_over_implicit_tls_reads_the_mailbox() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let out = curl_imap(&peers, "imaps", proxy.port("imaps"), ALICE, &token, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert!(
        stdout.contains(&welcome(ALICE)),
        "mailbox not readable: {stdout}"
    );
    // One line per connection with client, mechanism, user, result and duration.
    let log = proxy.wait_log("result=\"relayed\"");
    let line = log
        .lines()
        .find(|l| l.contains("result=\"relayed\""))
        .unwrap();
    for field in [
        "client=127.0.0.1:",
        "mechanism=\"OAUTHBEARER\"",
        "user=\"alice@example.com\"",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[test]
fn curl_oauthbearer_over_starttls() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "bob", SCOPE, 300);
    let out = curl_imap(
        &peers,
        "imap",
        proxy.port("imap"),
        "bob@example.com",
        &token,
        &["--ssl-reqd"],
    );
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&welcome("bob@example.com")));
}

#[test]
fn imaplib_both_mechanisms_with_continuation() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    for (port, tls) in [
        (proxy.port("imaps"), "implicit"),
        (proxy.port("imap"), "starttls"),
    ] {
        for mech in ["OAUTHBEARER", "XOAUTH2"] {
            let r = imaplib(&peers, port, tls, mech, ALICE, &token);
            assert_eq!(r["ok"], true, "{mech} over {tls}: {r}\n{}", proxy.log());
            assert!(r["subjects"].to_string().contains(&welcome(ALICE)), "{r}");
        }
    }
}

#[test]
fn sasl_ir_login_carries_upstream_capabilities_and_keeps_pipelined_commands() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    let greeting = c.expect_line();
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 SASL-IR ID AUTH=OAUTHBEARER AUTH=XOAUTH2"),
        "{greeting}"
    );
    assert!(
        greeting.contains("AUTH=PLAIN"),
        "passthrough on a TLS connection offers PLAIN: {greeting}"
    );
    assert!(greeting.contains("proxy.test ready"), "{greeting}");
    // AUTHENTICATE, SELECT and FETCH in one write: nothing may be lost.
    c.send(&format!(
        "a1 AUTHENTICATE OAUTHBEARER {}\r\na2 SELECT INBOX\r\na3 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
        oauthbearer(Some(ALICE), &token)
    ));
    let login = c.until("a1 ");
    let ok = login.last().unwrap();
    assert!(ok.starts_with("a1 OK [CAPABILITY IMAP4rev1"), "{login:?}");
    // The upstream's post-login capabilities, not the proxy's pre-login list.
    assert!(!ok.contains("AUTH=OAUTHBEARER"), "{ok}");
    let select = c.until("a2 ");
    assert!(select.last().unwrap().starts_with("a2 OK"), "{select:?}");
    let fetch = c.until("a3 ");
    assert!(
        fetch.iter().any(|l| l.contains(&welcome(ALICE))),
        "{fetch:?}"
    );
    c.send("a4 LOGOUT\r\n");
    let r = c.until("a4 ");
    assert!(r.last().unwrap().starts_with("a4 OK"), "{r:?}");
}

#[test]
fn empty_initial_response_then_continuation() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
    c.expect_line();
    c.send("a AUTHENTICATE XOAUTH2\r\n");
    assert_eq!(c.expect_line(), "+ ");
    c.send(&format!("{}\r\n", xoauth2(ALICE, &token)));
    let r = c.until("a ");
    assert!(r.last().unwrap().starts_with("a OK"), "{r:?}");
}

#[test]
fn cancel_with_star_is_bad() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    c.send("a AUTHENTICATE OAUTHBEARER\r\n");
    assert_eq!(c.expect_line(), "+ ");
    c.send("*\r\n");
    assert!(c.expect_line().starts_with("a BAD"));
    c.send("b NOOP\r\n");
    assert!(c.expect_line().starts_with("b OK"));
}

/// An OAUTHBEARER login the proxy refuses: returns the RFC 7628 error
/// challenge, after answering it with the dummy response and checking the
/// tagged `NO [AUTHENTICATIONFAILED]`.
fn refused_oauthbearer(c: &mut Raw, tag: &str, token: &str) -> Value {
    c.send(&format!(
        "{tag} AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
    ));
    let challenge = challenge_json(&c.expect_line());
    c.send("AQ==\r\n");
    let reply = c.expect_line();
    assert!(
        reply.starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED]")),
        "{reply}"
    );
    challenge
}

fn challenge_json(line: &str) -> Value {
    let b = line
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("not a challenge: {line}"));
    serde_json::from_slice(&b64_decode(b)).expect("challenge JSON")
}

#[test]
fn invalid_token_gets_rfc7628_challenge_then_authenticationfailed() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), "not-a-valid-token")
    ));
    let ch = challenge_json(&c.expect_line());
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    c.send("AQ==\r\n");
    assert_eq!(
        c.expect_line(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    // XOAUTH2: Google's form, answered with an empty line.
    c.send(&format!(
        "b AUTHENTICATE XOAUTH2 {}\r\n",
        xoauth2(ALICE, "not-a-valid-token")
    ));
    let ch = challenge_json(&c.expect_line());
    assert_eq!(ch["status"], "400", "{ch}");
    assert_eq!(ch["schemes"], "bearer");
    c.send("\r\n");
    assert_eq!(
        c.expect_line(),
        "b NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    // The session is still usable.
    c.send("c NOOP\r\n");
    assert!(c.expect_line().starts_with("c OK"));

    // And a real client sees the failure too.
    let out = curl_imap(
        &peers,
        "imaps",
        proxy.port("imaps"),
        ALICE,
        "not-a-valid-token",
        &[],
    );
    assert!(!out.status.success());
    let r = imaplib(
        &peers,
        proxy.port("imaps"),
        "implicit",
        "XOAUTH2",
        ALICE,
        "not-a-valid-token",
    );
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{r}"
    );
}

#[test]
fn expired_token_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 1);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut c = imaps(&peers, &proxy);
    let challenge = refused_oauthbearer(&mut c, "a", &token);
    assert_eq!(challenge["status"], "invalid_token");
}

#[test]
fn authzid_that_does_not_match_the_token_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some("bob@example.com"), &token)
    ));
    assert!(c.expect_line().starts_with("+ "));
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO [AUTHENTICATIONFAILED]"));
    c.send(&format!(
        "b AUTHENTICATE XOAUTH2 {}\r\n",
        xoauth2("bob", &token)
    ));
    assert!(c.expect_line().starts_with("+ "));
    c.send("\r\n");
    assert!(c.expect_line().starts_with("b NO [AUTHENTICATIONFAILED]"));
    // The username (not only the email) is an acceptable authzid.
    c.send(&format!(
        "c AUTHENTICATE XOAUTH2 {}\r\n",
        xoauth2("ALICE", &token)
    ));
    let r = c.until("c ");
    assert!(r.last().unwrap().starts_with("c OK"), "{r:?}");
    let log = proxy.wait_log("does not match");
    assert!(log.contains("\"bob@example.com\""), "{log}");
}

#[test]
fn missing_mapped_claim_fails_with_a_log_line_naming_it() {
    let peers = peers_read();
    // Scope `profile`: UserInfo shows it (a name), but this account has no
    // email for the upstream (`email` would be refused as a missing scope).
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = opts
        .directory
        .replace("required-scope = \"email\"", "required-scope = \"profile\"");
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "noemail", SCOPE, 300);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert_eq!(
        challenge_json(&c.expect_line())["status"],
        "insufficient_scope"
    );
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO [AUTHENTICATIONFAILED]"));
    proxy.wait_log("claim `email` missing");
}

#[test]
fn provider_down_is_a_temporary_failure_and_recovers() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    peers.control("stop oidc");
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    let reply = c.expect_line();
    peers.control("start oidc");
    assert!(reply.starts_with("a NO [UNAVAILABLE]"), "{reply}");
    // Not counted as a bad token: same connection, provider back, login works.
    let token = mint_token(&peers, "alice", SCOPE, 300);
    c.send(&format!(
        "b AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    let r = c.until("b ");
    assert!(
        r.last().unwrap().starts_with("b OK"),
        "{r:?}\n{}",
        proxy.log()
    );
}

#[test]
fn upstream_down_is_unavailable_and_the_session_stays_usable() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.imap_upstream = Some(format!("127.0.0.1:{}", free_port()));
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert!(c.expect_line().starts_with("a NO [UNAVAILABLE]"));
    c.send("b LOGIN alice@example.com alice-app-password\r\n");
    assert!(c.expect_line().starts_with("b NO [UNAVAILABLE]"));
    c.send("c NOOP\r\n");
    assert!(c.expect_line().starts_with("c OK"));
}

#[test]
fn password_passthrough_login_plain_and_login_mechanism() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let r = imaplib(
        &peers,
        proxy.port("imaps"),
        "implicit",
        "LOGIN",
        ALICE,
        "alice-app-password",
    );
    assert_eq!(r["ok"], true, "{r}\n{}", proxy.log());
    assert!(r["subjects"].to_string().contains(&welcome(ALICE)));
    let r = imaplib(
        &peers,
        proxy.port("imap"),
        "starttls",
        "LOGIN",
        ALICE,
        "wrong-password",
    );
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{r}"
    );

    let mut c = imaps(&peers, &proxy);
    // A synchronizing literal in LOGIN.
    c.send("a LOGIN {17}\r\n");
    assert!(c.expect_line().starts_with("+ "));
    c.send("alice@example.com \"alice-app-password\"\r\n");
    let r = c.until("a ");
    assert!(r.last().unwrap().starts_with("a OK"), "{r:?}");

    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE PLAIN {}\r\n",
        b64(b"\0bob@example.com\0bob-app-password")
    ));
    let r = c.until("a ");
    assert!(r.last().unwrap().starts_with("a OK"), "{r:?}");

    let mut c = imaps(&peers, &proxy);
    c.send("a AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.expect_line(), "+ VXNlcm5hbWU6");
    c.send(&format!("{}\r\n", b64(b"bob@example.com")));
    assert_eq!(c.expect_line(), "+ UGFzc3dvcmQ6");
    c.send(&format!("{}\r\n", b64(b"bob-app-password")));
    let r = c.until("a ");
    assert!(r.last().unwrap().starts_with("a OK"), "{r:?}");
}

#[test]
fn password_passthrough_keeps_a_non_utf8_password_byte_for_byte() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let user = peers.str(&["dovecot", "latin1_user", "email"]);
    let hex = peers.str(&["dovecot", "latin1_user", "password_hex"]);
    let password: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    assert!(
        std::str::from_utf8(&password).is_err(),
        "not a Latin-1 test"
    );

    // LOGIN with the password in a literal.
    let mut c = imaps(&peers, &proxy);
    let mut line = format!("a LOGIN {user} {{{}}}\r\n", password.len()).into_bytes();
    c.send_bytes(&line);
    assert!(c.expect_line().starts_with("+ "));
    line = password.clone();
    line.extend_from_slice(b"\r\n");
    c.send_bytes(&line);
    let r = c.until("a ");
    assert!(
        r.last().unwrap().starts_with("a OK"),
        "{r:?}\n{}",
        proxy.log()
    );

    // AUTHENTICATE LOGIN.
    let mut c = imaps(&peers, &proxy);
    c.send("a AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.expect_line(), "+ VXNlcm5hbWU6");
    c.send(&format!("{}\r\n", b64(user.as_bytes())));
    assert_eq!(c.expect_line(), "+ UGFzc3dvcmQ6");
    c.send(&format!("{}\r\n", b64(&password)));
    let r = c.until("a ");
    assert!(
        r.last().unwrap().starts_with("a OK"),
        "{r:?}\n{}",
        proxy.log()
    );

    // AUTHENTICATE PLAIN.
    let mut c = imaps(&peers, &proxy);
    let mut plain = format!("\0{user}\0").into_bytes();
    plain.extend_from_slice(&password);
    c.send(&format!("a AUTHENTICATE PLAIN {}\r\n", b64(&plain)));
    let r = c.until("a ");
    assert!(
        r.last().unwrap().starts_with("a OK"),
        "{r:?}\n{}",
        proxy.log()
    );

    // The same password made UTF-8 (what a lossy conversion would send) is wrong.
    let mut c = imaps(&peers, &proxy);
    let lossy = String::from_utf8_lossy(&password).into_owned();
    c.send(&format!(
        "a LOGIN {user} {{{}+}}\r\n{lossy}\r\n",
        lossy.len()
    ));
    let r = c.until("a ");
    assert!(r.last().unwrap().starts_with("a NO"), "{r:?}");
}

#[test]
fn dovecot_sees_the_real_client_address_for_passthrough() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    // Connect from 127.0.0.7 so the address is distinguishable from the proxy's.
    let r = run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--interface", "127.0.0.7"])
        .arg(format!(
            "imap://127.0.0.1:{}/INBOX",
            proxy.port("imap-plain")
        ))
        .args(["-u", "alice@example.com:alice-app-password", "-X", "NOOP"]));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let log_path = peers.str(&["dovecot", "log"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("rip=127.0.0.7") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Dovecot never logged rip=127.0.0.7:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn starttls_listener_refuses_auth_before_tls_and_discards_injected_commands() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("imap"), false, &peers.ca());
    let greeting = c.expect_line();
    assert!(greeting.contains("STARTTLS LOGINDISABLED"), "{greeting}");
    assert!(!greeting.contains("AUTH="), "{greeting}");
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert!(c.expect_line().starts_with("a NO [PRIVACYREQUIRED]"));
    c.send("b LOGIN alice@example.com alice-app-password\r\n");
    assert!(c.expect_line().starts_with("b NO [PRIVACYREQUIRED]"));
    // STARTTLS with a command injected behind it in the same packet.
    c.send("c STARTTLS\r\nd CAPABILITY\r\n");
    assert!(c.expect_line().starts_with("c OK"));
    c.upgrade();
    c.send("e CAPABILITY\r\n");
    let lines = c.until("e ");
    assert!(
        !lines.iter().any(|l| l.starts_with("d ")),
        "injected command was answered: {lines:?}"
    );
    assert!(
        lines[0].contains("AUTH=OAUTHBEARER") && !lines[0].contains("STARTTLS"),
        "{lines:?}"
    );
    c.send("f STARTTLS\r\n");
    assert!(c.expect_line().starts_with("f BAD"));
}

#[test]
fn protocol_edges_bad_commands_long_lines_id_and_logout() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    c.send("a SELECT INBOX\r\n");
    assert!(c.expect_line().starts_with("a BAD"));
    c.send("garbage\r\n");
    assert!(c.expect_line().starts_with("* BAD"));
    c.send(&format!("b NOOP {}\r\n", "x".repeat(70 * 1024)));
    assert!(c.expect_line().starts_with("* BAD"), "over-long line");
    c.send("c ID (\"name\" \"test\")\r\n");
    assert!(c.expect_line().starts_with("* ID"));
    assert!(c.expect_line().starts_with("c OK"));
    c.send("d CAPABILITY\r\n");
    assert!(c.expect_line().starts_with("* CAPABILITY IMAP4rev1"));
    assert!(c.expect_line().starts_with("d OK"));
    c.send("e LOGOUT\r\n");
    assert!(c.expect_line().starts_with("* BYE"));
    assert!(c.expect_line().starts_with("e OK"));
    assert!(c.line().is_none(), "closed after LOGOUT");
}

#[test]
fn a_large_token_within_64k_is_accepted_as_a_line() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    let token = "A".repeat(40 * 1024);
    // Parsed as a line and sent to the provider, which refuses it.
    let challenge = refused_oauthbearer(&mut c, "a", &token);
    assert_eq!(challenge["status"], "invalid_token");
}

#[test]
fn too_many_failures_end_the_connection_with_bye() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    for i in 1..=3 {
        c.send(&format!(
            "a{i} AUTHENTICATE OAUTHBEARER {}\r\n",
            oauthbearer(None, "bad-token")
        ));
        assert!(c.expect_line().starts_with("+ "));
        c.send("AQ==\r\n");
        assert!(c
            .expect_line()
            .starts_with(&format!("a{i} NO [AUTHENTICATIONFAILED]")));
    }
    assert!(c.expect_line().starts_with("* BYE"));
    assert!(c.line().is_none());
}

#[test]
fn failure_replies_are_delayed() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.auth_failure_delay = "1s";
    let proxy = Proxy::start(&peers, &opts);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "bad-token")
    ));
    assert!(c.expect_line().starts_with("+ "));
    let t = std::time::Instant::now();
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO"));
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

fn introspect_directory(peers: &Peers, auth: &str) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{}\"\nendpoint.method = \"introspect\"\nrequired-scope = \"email\"\n{auth}fields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "introspection"])
    )
}

#[test]
fn introspection_with_every_client_auth_method() {
    let peers = peers_read();
    let basic = &peers.info["oidc"]["basic_client"];
    let methods = [
        "auth.method = \"none\"\n".to_string(),
        format!(
            "auth.method = \"basic\"\nauth.username = \"{}\"\nauth.secret = \"{}\"\n",
            basic[0].as_str().unwrap(),
            basic[1].as_str().unwrap()
        ),
        format!(
            "auth.method = \"token\"\nauth.token = \"{}\"\n",
            peers.str(&["oidc", "static_token"])
        ),
        "auth.method = \"user-token\"\n".to_string(),
    ];
    for auth in methods {
        let mut opts = ProxyOptions::new(&peers);
        opts.directory = introspect_directory(&peers, &auth);
        let proxy = Proxy::start(&peers, &opts);
        let token = mint_token(&peers, "alice", SCOPE, 300);
        let out = curl_imap(&peers, "imaps", proxy.port("imaps"), ALICE, &token, &[]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&welcome(ALICE)),
            "introspection with {auth}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
        let r = imaplib(
            &peers,
            proxy.port("imaps"),
            "implicit",
            "OAUTHBEARER",
            ALICE,
            "invalid-token",
        );
        assert_eq!(r["ok"], false, "{auth}");
    }
}

#[test]
fn introspection_with_wrong_client_credentials_is_temporary_not_invalid() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = introspect_directory(
        &peers,
        "auth.method = \"basic\"\nauth.username = \"mail-proxy\"\nauth.secret = \"wrong\"\n",
    );
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert!(c.expect_line().starts_with("a NO [UNAVAILABLE]"));
}

#[test]
fn no_token_password_or_secret_in_the_log_at_trace_level() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.log_level = "trace";
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let out = curl_imap(&peers, "imaps", proxy.port("imaps"), ALICE, &token, &[]);
    assert!(out.status.success());
    let r = imaplib(
        &peers,
        proxy.port("imaps"),
        "implicit",
        "XOAUTH2",
        ALICE,
        &token,
    );
    assert_eq!(r["ok"], true);
    let r = imaplib(
        &peers,
        proxy.port("imaps"),
        "implicit",
        "LOGIN",
        ALICE,
        "alice-app-password",
    );
    assert_eq!(r["ok"], true);
    let r = imaplib(
        &peers,
        proxy.port("imaps"),
        "implicit",
        "LOGIN",
        ALICE,
        "wrong-password-xyz",
    );
    assert_eq!(r["ok"], false);
    // Four connections, four outcome lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = proxy.log();
        if log.matches("connection closed").count() >= 4 || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(log.matches("connection closed").count() >= 4, "{log}");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG") || log.contains("INFO"),
        "{log}"
    );
    let secrets = [
        token.clone(),
        oauthbearer(Some(ALICE), &token),
        xoauth2(ALICE, &token),
        "alice-app-password".to_string(),
        "wrong-password-xyz".to_string(),
        peers.str(&["dovecot", "master_secret"]),
        b64(format!(
            "{ALICE}\0proxy\0{}",
            peers.str(&["dovecot", "master_secret"])
        )
        .as_bytes()),
    ];
    for s in secrets {
        assert!(
            !log.contains(&s),
            "a secret appears in the log: {}...",
            &s[..s.len().min(6)]
        );
    }
}

#[test]
fn upstream_refusing_the_resolved_user_is_an_authentication_failure() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    // "noemail" is a provider account with no Dovecot mailbox (and no
    // email, hence scope `profile`: UserInfo shows `email` for `email`).
    opts.imap_identity = "username";
    opts.directory = opts
        .directory
        .replace("required-scope = \"email\"", "required-scope = \"profile\"");
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "noemail", SCOPE, 300);
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert!(c
        .expect_line()
        .starts_with("a NO [AUTHENTICATIONFAILED] The mail server does not accept"));
    // The session stays usable for another try.
    c.send("b NOOP\r\n");
    assert!(c.expect_line().starts_with("b OK"));
    proxy.wait_log("refused noemail");
}

#[test]
fn a_client_that_disconnects_after_the_error_challenge_is_logged_as_failed() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut c = imaps(&peers, &proxy);
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "bad-token")
    ));
    assert!(c.expect_line().starts_with("+ "));
    drop(c);
    proxy.wait_log("result=\"auth-failed\"");
}
