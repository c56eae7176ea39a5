//! ManageSieve end to end: the proxy's listeners "sieve" (STARTTLS) and
//! "sieve-tls" (implicit TLS) in front of the test Dovecot's real
//! managesieve, driven by raw transcripts (Debian's ManageSieve clients
//! have neither OAUTHBEARER nor XOAUTH2). The decisive test uploads a
//! script through the proxy and watches it file a message that Postfix
//! delivered over LMTP: the session really ran as the token's user.
//! Refusals, faults and limits: `managesieve_faults_e2e.rs`.

mod common;
mod managesieve_support;
use common::*;
use managesieve_support::*;
use std::process::Command;
use std::time::{Duration, Instant};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn greeting_capabilities_noop_and_logout() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
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

/// The `"SIEVE"` line of a capability list.
fn sieve_line(lines: &[String]) -> String {
    lines
        .iter()
        .find(|l| l.starts_with("\"SIEVE\" "))
        .cloned()
        .unwrap_or_else(|| panic!("no SIEVE capability: {lines:?}"))
}

#[test]
fn the_first_implicit_tls_greeting_after_start_names_the_learned_extensions() {
    // The very first client after start comes over implicit TLS, whose
    // greeting the proxy may send in the TLS server's first flight: it must
    // still be Dovecot's own list (with its NOTIFY), not the defaults.
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let (mut c, first) = sieve_tls(&peers, &proxy);
    assert!(
        first.contains(&"\"NOTIFY\" \"mailto\"".to_string()),
        "{first:?}\n{}",
        proxy.log()
    );
    c.send("CAPABILITY\r\n");
    let learned = c.until("OK");
    assert!(learned.contains(&"\"NOTIFY\" \"mailto\"".to_string()));
    assert_eq!(sieve_line(&first), sieve_line(&learned));
    // Later implicit-TLS greetings say the same (from the first flight).
    let (_, again) = sieve_tls(&peers, &proxy);
    assert_eq!(sieve_line(&again), sieve_line(&learned));
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
    // Neither the token nor the master secret reaches the log (debug level).
    let log = proxy.log();
    assert!(log.contains("bob@example.com"), "{log}");
    assert!(!log.contains(&token), "the token is in the log");
    assert!(!log.contains(&peers.str(&["dovecot", "master_secret"])));
}

/// Uploads `script` as "e2e" and makes it the active one.
fn upload_and_activate(c: &mut Raw, script: &str) {
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
}

/// Alice writes to herself through the proxy's submission side.
fn send_to_alice(peers: &Peers, proxy: &Proxy, token: &str, subject: &str) {
    let message = proxy.dir.path().join("message.eml");
    let text = format!("From: {ALICE}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nFile me.\r\n");
    std::fs::write(&message, text).expect("write message");
    let sent = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", &peers.ca()])
        .arg(format!(
            "smtps://127.0.0.1:{}/sieve.example",
            proxy.port("submissions")
        ))
        .args(["--mail-from", ALICE, "--mail-rcpt", ALICE])
        .args(["--oauth2-bearer", token, "-u", &format!("{ALICE}:")])
        .arg("--upload-file")
        .arg(&message));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
}

/// `SEARCH SUBJECT` in alice's `mailbox` through the proxy's IMAP side;
/// `None` while the mailbox cannot be selected.
fn search(
    peers: &Peers,
    proxy: &Proxy,
    token: &str,
    mailbox: &str,
    subject: &str,
) -> Option<String> {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", &peers.ca()])
        .args(["--oauth2-bearer", token, "-u", &format!("{ALICE}:")])
        .arg(format!(
            "imaps://127.0.0.1:{}/{mailbox}",
            proxy.port("imaps")
        ))
        .args(["-X", &format!("SEARCH SUBJECT \"{subject}\"")]));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success().then_some(text)
}

#[test]
fn a_script_uploaded_through_the_proxy_files_mail_delivered_by_postfix() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let subject = unique("filed");
    let (mut c, _) = sieve_tls(&peers, &proxy);
    login(
        &mut c,
        "OAUTHBEARER",
        &oauthbearer(Some(ALICE), &token),
        true,
    );
    upload_and_activate(
        &mut c,
        &format!(
            "require [\"fileinto\", \"mailbox\"];\r\nif header :contains \"subject\" \"{subject}\" {{\r\n  fileinto :create \"Sieved\";\r\n}}\r\n"
        ),
    );
    c.send("LOGOUT\r\n");
    // Postfix -> LMTP -> Dovecot runs alice's active script: the message
    // is in "Sieved", read back through the proxy's IMAP side, not in INBOX.
    send_to_alice(&peers, &proxy, &token, &subject);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while search(&peers, &proxy, &token, "Sieved", &subject).is_none_or(|t| t == "* SEARCH") {
        assert!(
            Instant::now() < deadline,
            "{subject} was never filed into Sieved\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let inbox = search(&peers, &proxy, &token, "INBOX", &subject);
    assert_eq!(inbox.as_deref(), Some("* SEARCH"));
}

#[test]
fn a_proxy_protocol_v2_upstream_gets_the_header_then_xclient() {
    // Dovecot's managesieve listener with `haproxy = yes` refuses a
    // connection without the PROXY v2 header. A plaintext listener: its
    // first greeting waits for the capabilities, learned with a LOCAL header.
    let peers = peers_read();
    let port = free_port();
    let mut opts = ProxyOptions::new(&peers);
    opts.extra = format!(
        "[listener.sieve-pp]\nprotocol = \"managesieve\"\nbind = \"127.0.0.1:{port}\"\ntls = \"none\"\ndirectory = \"test\"\nupstream = \"sieve-pp\"\n\n\
         [upstream.sieve-pp]\naddress = \"127.0.0.1:{}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"%{{file:{}}}%\"\nidentity = \"email\"\nproxy-protocol = \"v2\"\n",
        peers.port(&["dovecot", "managesieve_haproxy_port"]),
        peers.str(&["dovecot", "master_user"]),
        peers.str(&["dovecot", "master_secret_file"]),
    );
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "bob", SCOPE, 300);
    let mut c = Raw::over(tcp_from("127.0.0.12", port), false, &peers.ca());
    let greeting = c.until("OK").join("\n");
    assert!(
        greeting.contains("\"NOTIFY\""),
        "{greeting}\n{}",
        proxy.log()
    );
    login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
    c.send("LISTSCRIPTS\r\n");
    assert!(c.until("OK").last().unwrap().starts_with("OK"));
    wait_login_logged(&peers, "rip=127.0.0.12");
}

/// A TLS handshake offering `alpn`: the protocol the server chose, or the
/// handshake's error.
fn tls_with_alpn(peers: &Peers, port: u16, alpn: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut config = (*tls_config(&peers.ca())).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut first = [0u8; 1];
    std::io::Read::read(&mut tls, &mut first).map_err(|e| e.to_string())?;
    Ok(tls.conn.alpn_protocol().map(<[u8]>::to_vec))
}

#[test]
fn alpn_managesieve_is_offered_and_other_protocols_are_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let port = proxy.port("sieve-tls");
    assert_eq!(
        tls_with_alpn(&peers, port, b"managesieve"),
        Ok(Some(b"managesieve".to_vec()))
    );
    let imap = tls_with_alpn(&peers, port, b"imap");
    assert!(
        imap.as_ref()
            .is_err_and(|e| e.contains("NoApplicationProtocol")),
        "{imap:?}"
    );
}
