//! ManageSieve end to end: the proxy's listeners "sieve" (STARTTLS) and
//! "sieve-tls" (implicit TLS) in front of the test Dovecot's real
//! managesieve, driven by raw transcripts (Debian's ManageSieve clients
//! have neither OAUTHBEARER nor XOAUTH2). The decisive test uploads a
//! script through the proxy and watches it file a message that Postfix
//! delivered over LMTP: the session really ran as the token's user.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS session on the implicit-TLS listener, its greeting read.
fn sieve_tls(peers: &Peers, proxy: &Proxy) -> (Raw, Vec<String>) {
    let mut c = Raw::connect(proxy.port("sieve-tls"), true, &peers.ca());
    let greeting = c.until("OK");
    (c, greeting)
}

/// A session on the STARTTLS listener after STARTTLS; returns the
/// capabilities the proxy re-sent under TLS.
fn sieve_starttls(peers: &Peers, proxy: &Proxy) -> (Raw, Vec<String>) {
    let mut c = Raw::connect(proxy.port("sieve"), false, &peers.ca());
    c.until("OK");
    c.send("STARTTLS\r\n");
    assert_eq!(c.expect_line(), "OK \"Begin TLS negotiation now.\"");
    c.upgrade();
    let caps = c.until("OK");
    (c, caps)
}

/// `"<base64>"`, or `{n+}\r\n<base64>` when `literal`.
fn string(b64: &str, literal: bool) -> String {
    if literal {
        format!("{{{}+}}\r\n{b64}", b64.len())
    } else {
        format!("\"{b64}\"")
    }
}

/// The JSON of an RFC 7628 error challenge sent as a quoted string.
fn challenge_json(line: &str) -> Value {
    let b = line
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a challenge string: {line}"));
    serde_json::from_slice(&b64_decode(b)).expect("challenge JSON")
}

/// A login with `mech` whose initial response is `b64`, expected to succeed.
fn login(c: &mut Raw, mech: &str, b64: &str, literal: bool) {
    c.send(&format!(
        "AUTHENTICATE \"{mech}\" {}\r\n",
        string(b64, literal)
    ));
    let reply = c.expect_line();
    assert!(reply.starts_with("OK"), "{mech} literal={literal}: {reply}");
}

/// A refused bearer login: the error challenge (returned), the dummy
/// answer, then `NO`.
fn refused(c: &mut Raw, mech: &str, b64: &str) -> Value {
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

fn revoke(peers: &Peers, token: &str) {
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

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("sieve-e2e-{tag}-{nanos}")
}

#[test]
fn greeting_capabilities_noop_and_logout() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    // The first client of the upstream waits while the proxy learns
    // Dovecot's capabilities (SIEVE, NOTIFY) with a connection of its own.
    // An implicit-TLS greeting goes out in the TLS server's first flight
    // and cannot wait: before anything was learned it names Dovecot's
    // default SIEVE extensions (and starts the learning).
    let mut first = Raw::connect(proxy.port("sieve"), false, &peers.ca());
    let text = first.until("OK").join("\n");
    assert!(text.contains("\"NOTIFY\" \"mailto\""), "{text}");
    let (mut c, greeting) = sieve_tls(&peers, &proxy);
    let text = greeting.join("\n");
    assert!(
        text.contains("\"SASL\" \"OAUTHBEARER XOAUTH2 PLAIN\""),
        "{text}"
    );
    assert!(text.contains("\"VERSION\" \"1.0\""), "{text}");
    // Learned from Dovecot: SIEVE with its extensions, and NOTIFY.
    assert!(text.contains("\"SIEVE\" \"fileinto "), "{text}");
    assert!(text.contains("\"NOTIFY\" \"mailto\""), "{text}");
    assert!(
        !text.contains("STARTTLS") && !text.contains("XCLIENT"),
        "{text}"
    );
    assert_eq!(
        greeting.last().unwrap(),
        "OK \"proxy.test ManageSieve ready.\""
    );
    c.send("CAPABILITY\r\n");
    assert_eq!(
        c.until("OK").join("\n"),
        text.replace(
            "OK \"proxy.test ManageSieve ready.\"",
            "OK \"Capability completed.\""
        )
    );
    c.send("NOOP\r\nNOOP \"sync-1\"\r\nLISTSCRIPTS\r\nAUTHENTICATE \"CRAM-MD5\"\r\n");
    assert_eq!(c.expect_line(), "OK \"Done\"");
    assert_eq!(c.expect_line(), "OK (TAG \"sync-1\") \"Done\"");
    assert!(c
        .expect_line()
        .starts_with("NO \"Command LISTSCRIPTS is unknown"));
    assert_eq!(
        c.expect_line(),
        "NO \"Unsupported authentication mechanism.\""
    );
    c.send("LOGOUT\r\n");
    assert_eq!(c.expect_line(), "OK \"Logout completed.\"");
    assert_eq!(c.line(), None);
}

#[test]
fn starttls_listener_refuses_auth_before_tls_and_resends_capabilities() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("sieve"), false, &peers.ca());
    let greeting = c.until("OK").join("\n");
    assert!(greeting.contains("\"SASL\" \"\"\n"), "{greeting}");
    assert!(greeting.contains("\"STARTTLS\""), "{greeting}");
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    assert!(c.expect_line().starts_with("NO (ENCRYPT-NEEDED)"));
    // A command injected behind STARTTLS is never answered.
    c.send("STARTTLS\r\nCAPABILITY\r\n");
    assert_eq!(c.expect_line(), "OK \"Begin TLS negotiation now.\"");
    c.upgrade();
    let caps = c.until("OK").join("\n");
    assert!(
        caps.contains("\"SASL\" \"OAUTHBEARER XOAUTH2 PLAIN\""),
        "{caps}"
    );
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(
        caps.ends_with("OK \"TLS negotiation successful.\""),
        "{caps}"
    );
    c.send("NOOP \"after\"\r\n");
    assert_eq!(c.expect_line(), "OK (TAG \"after\") \"Done\"");
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
}

#[test]
fn token_logins_with_both_mechanisms_quoted_and_literal() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "bob", SCOPE, 300);
    for literal in [false, true] {
        for mech in ["OAUTHBEARER", "XOAUTH2"] {
            let b64 = match mech {
                "OAUTHBEARER" => oauthbearer(Some("bob@example.com"), &token),
                _ => xoauth2("bob@example.com", &token),
            };
            let (mut c, _) = if literal {
                sieve_starttls(&peers, &proxy)
            } else {
                sieve_tls(&peers, &proxy)
            };
            login(&mut c, mech, &b64, literal);
            // Now Dovecot's managesieve: a post-login command works.
            c.send("LISTSCRIPTS\r\n");
            let listed = c.until("OK");
            assert!(listed.last().unwrap().starts_with("OK"), "{listed:?}");
            c.send("LOGOUT\r\n");
            assert!(c.expect_line().starts_with("OK"));
        }
    }
    // No initial response: an empty challenge, the answer as a literal.
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send("AUTHENTICATE \"XOAUTH2\"\r\n");
    assert_eq!(c.expect_line(), "\"\"");
    c.send(&format!("{}\r\n", string(&xoauth2("bob", &token), true)));
    assert!(c.expect_line().starts_with("OK"));
    // "*" cancels an exchange with NO.
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send("AUTHENTICATE \"OAUTHBEARER\"\r\n");
    assert_eq!(c.expect_line(), "\"\"");
    c.send("\"*\"\r\n");
    assert_eq!(c.expect_line(), "NO \"Authentication aborted by client.\"");
}

#[test]
fn a_script_uploaded_through_the_proxy_files_mail_delivered_by_postfix() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let subject = unique("filed");
    let script = format!(
        "require [\"fileinto\", \"mailbox\"];\r\nif header :contains \"subject\" \"{subject}\" {{\r\n  fileinto :create \"Sieved\";\r\n}}\r\n"
    );
    let (mut c, _) = sieve_tls(&peers, &proxy);
    login(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some(ALICE), &token),
        true,
    );
    c.send(&format!(
        "PUTSCRIPT \"e2e\" {{{}+}}\r\n{script}\r\n",
        script.len()
    ));
    assert_eq!(c.until("OK").last().unwrap(), "OK \"PUTSCRIPT completed.\"");
    c.send("SETACTIVE \"e2e\"\r\n");
    assert!(c.expect_line().starts_with("OK"));
    c.send("LISTSCRIPTS\r\n");
    let listed = c.until("OK");
    assert!(listed.contains(&"\"e2e\" ACTIVE".to_string()), "{listed:?}");
    c.send("LOGOUT\r\n");

    // Alice writes to herself through the proxy's submission side:
    // Postfix -> LMTP -> Dovecot runs her active script.
    let message = proxy.dir.path().join("message.eml");
    std::fs::write(
        &message,
        format!("From: {ALICE}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nFile me.\r\n"),
    )
    .expect("write message");
    let sent = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", &peers.ca()])
        .arg(format!(
            "smtps://127.0.0.1:{}/sieve.example",
            proxy.port("submissions")
        ))
        .args(["--mail-from", ALICE, "--mail-rcpt", ALICE])
        .args(["--oauth2-bearer", &token, "-u", &format!("{ALICE}:")])
        .arg("--upload-file")
        .arg(&message));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // Read back through the proxy's IMAP side: in "Sieved", not in INBOX.
    let search = |mailbox: &str| {
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert", &peers.ca()])
            .args(["--oauth2-bearer", &token, "-u", &format!("{ALICE}:")])
            .arg(format!(
                "imaps://127.0.0.1:{}/{mailbox}",
                proxy.port("imaps")
            ))
            .args(["-X", &format!("SEARCH SUBJECT \"{subject}\"")]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success().then_some(text)
    };
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let found = search("Sieved").is_some_and(|t| t.trim() != "* SEARCH");
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{subject} was never filed into Sieved\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(search("INBOX").as_deref().map(str::trim), Some("* SEARCH"));
}

#[test]
fn invalid_expired_and_revoked_tokens_get_the_error_challenge_then_no() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let expired = mint_token(&peers, "alice", SCOPE, 1);
    let revoked = mint_token(&peers, "alice", SCOPE, 300);
    revoke(&peers, &revoked);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    let ch = refused(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some(ALICE), "not-a-token"),
    );
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    let ch = refused(&mut c, "XOAUTH2", &xoauth2(ALICE, "not-a-token"));
    assert_eq!(ch["status"], "400", "{ch}");
    assert_eq!(ch["schemes"], "bearer");
    let ch = refused(&mut c, "OAUTHBEARER", &oauthbearer(None, &revoked));
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    // Three failures end the connection.
    assert_eq!(c.expect_line(), "BYE \"Too many authentication failures.\"");
    assert_eq!(c.line(), None);
    std::thread::sleep(Duration::from_millis(2500));
    let (mut c, _) = sieve_tls(&peers, &proxy);
    let ch = refused(&mut c, "OAUTHBEARER", &oauthbearer(None, &expired));
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    c.send("NOOP\r\n");
    assert_eq!(c.expect_line(), "OK \"Done\"");
}

#[test]
fn an_authzid_that_does_not_match_the_token_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    refused(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some("bob@example.com"), &token),
    );
    refused(&mut c, "XOAUTH2", &xoauth2("bob@example.com", &token));
    proxy.wait_log("does not match");
}

#[test]
fn plain_passthrough_reaches_dovecot_with_the_client_address() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let tcp = tcp_from("127.0.0.9", proxy.port("sieve-tls"));
    let mut c = Raw::over(tcp, true, &peers.ca());
    c.until("OK");
    let wrong = b64(format!("\0{ALICE}\0wrong-password").as_bytes());
    c.send(&format!("AUTHENTICATE \"PLAIN\" \"{wrong}\"\r\n"));
    assert!(c.expect_line().starts_with("NO"));
    let right = b64(format!("\0{ALICE}\0alice-app-password").as_bytes());
    login(&mut c, "PLAIN", &right, true);
    c.send("LISTSCRIPTS\r\n");
    assert!(c.until("OK").last().unwrap().starts_with("OK"));
    let log_path = peers.str(&["dovecot", "log"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let seen = log.lines().any(|l| {
            l.contains("managesieve-login") && l.contains("Login:") && l.contains("rip=127.0.0.9")
        });
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Dovecot never logged rip=127.0.0.9"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn provider_down_is_trylater_and_recovers() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    peers.control("stop oidc");
    let (mut c, _) = sieve_tls(&peers, &proxy);
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    let reply = c.expect_line();
    peers.control("start oidc");
    assert!(reply.starts_with("NO (TRYLATER)"), "{reply}");
    let token = mint_token(&peers, "alice", SCOPE, 300);
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
}

#[test]
fn dovecot_down_is_trylater() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut c, _) = sieve_tls(&peers, &proxy);
    peers.control("stop dovecot");
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer(None, &token)
    ));
    let bearer = c.expect_line();
    let plain = b64(format!("\0{ALICE}\0alice-app-password").as_bytes());
    c.send(&format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n"));
    let password = c.expect_line();
    peers.control("start dovecot");
    assert!(bearer.starts_with("NO (TRYLATER)"), "{bearer}");
    assert!(password.starts_with("NO (TRYLATER)"), "{password}");
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
}
