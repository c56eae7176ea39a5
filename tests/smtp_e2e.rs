//! End to end: the proxy's SMTP listeners (STARTTLS "submission" and
//! implicit TLS "submissions") in front of a real Postfix that delivers
//! into the test Dovecot, driven by real clients (curl, Python smtplib,
//! msmtp) and by raw transcripts for the protocol corners.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Every external client runs under this bound (coreutils `timeout`).
const CLIENT_TIMEOUT: &str = "60";
/// How long a submitted message may take to reach bob's mailbox.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

const SCOPE: &str = "openid email profile";

/// (listener, implicit TLS)
const LISTENERS: &[(&str, bool)] = &[("submission", false), ("submissions", true)];

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("smtp-e2e-{tag}-{}-{nanos}", std::process::id())
}

fn message_file(dir: &Path, subject: &str) -> String {
    let path = dir.join(format!("{subject}.eml"));
    let text = format!(
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\n\r\nHello Bob, this is {subject}.\r\n"
    );
    std::fs::write(&path, text).expect("write message");
    path_str(&path)
}

fn bounded(program: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", CLIENT_TIMEOUT, program]);
    c
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn curl_send(
    peers: &Peers,
    proxy: &Proxy,
    listener: &str,
    implicit: bool,
    token: &str,
    subject: &str,
) -> Output {
    let scheme = if implicit { "smtps" } else { "smtp" };
    let file = message_file(proxy.dir.path(), subject);
    run(bounded("curl")
        .args(["-sS", "-v", "--max-time", "30", "--ssl-reqd"])
        // The URL path is the name curl says in EHLO.
        .arg(format!(
            "{scheme}://127.0.0.1:{}/curl.example",
            proxy.port(listener)
        ))
        .args([
            "--mail-from",
            "alice@example.com",
            "--mail-rcpt",
            "bob@example.com",
        ])
        .args(["--upload-file", &file])
        .args(["--oauth2-bearer", token])
        .args(["-u", "alice@example.com:"])
        .args(["--cacert", &peers.ca()]))
}

fn smtplib(
    peers: &Peers,
    proxy: &Proxy,
    listener: (&str, bool),
    login: SmtpLogin<'_>,
    subject: &str,
) -> String {
    let out = common::smtplib(peers, proxy, listener, "alice@example.com", login, subject);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "smtplib failed: {}\nproxy log:\n{}",
        text(&out),
        proxy.log()
    );
    stdout
}

/// Waits until `subject` is in bob's mailbox, read through the proxy's
/// IMAP listener with bob's token; returns the whole message.
fn read_from_bob(peers: &Peers, proxy: &Proxy, subject: &str) -> String {
    let token = mint_token(peers, "bob", SCOPE, 300);
    let base = format!("imaps://127.0.0.1:{}/INBOX", proxy.port("imaps"));
    let curl = |url: &str, request: Option<&str>| {
        let mut c = bounded("curl");
        c.args(["-sS", "--max-time", "30", "--cacert", &peers.ca()])
            .args(["--oauth2-bearer", &token, "-u", "bob@example.com:"])
            .arg(url);
        if let Some(r) = request {
            c.args(["-X", r]);
        }
        run(&mut c)
    };
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        // UIDs, not sequence numbers: another session's view of the
        // sequence can differ while deliveries land (CI fetched another
        // message once by the number a SEARCH had just given).
        let out = curl(&base, Some(&format!("UID SEARCH SUBJECT \"{subject}\"")));
        assert!(
            out.status.success(),
            "IMAP search through the proxy failed: {}",
            text(&out)
        );
        let found = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.parse::<u32>().ok())
            .next_back();
        if let Some(n) = found {
            let out = curl(&format!("{base};UID={n}"), None);
            assert!(
                out.status.success(),
                "IMAP fetch through the proxy failed: {}",
                text(&out)
            );
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{subject} never reached bob's mailbox"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A raw session that has said EHLO and, on the STARTTLS listener, has
/// started TLS and said EHLO again. Returns the last EHLO reply.
fn raw_ready(peers: &Peers, proxy: &Proxy, listener: &str, implicit: bool) -> (Raw, Vec<String>) {
    let mut raw = Raw::connect(proxy.port(listener), implicit, &peers.ca());
    assert_eq!(raw.expect_line(), "220 proxy.test ESMTP");
    raw.send("EHLO raw.example\r\n");
    let mut ehlo = raw.until("250 ");
    if !implicit {
        raw.send("STARTTLS\r\n");
        assert_eq!(raw.expect_line(), "220 2.0.0 Ready to start TLS");
        raw.upgrade();
        raw.send("EHLO raw.example\r\n");
        ehlo = raw.until("250 ");
    }
    (raw, ehlo)
}

#[test]
fn implicit_tls_banner_comes_in_the_servers_first_flight() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let banner = first_flight_plaintext(proxy.port("submissions"), &peers.ca());
    assert_eq!(String::from_utf8_lossy(&banner), "220 proxy.test ESMTP\r\n");
}

#[test]
fn curl_sends_with_oauthbearer_on_both_listeners() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (listener, implicit) in LISTENERS {
        let token = mint_token(&peers, "alice", SCOPE, 300);
        let subject = unique(&format!("curl-{listener}"));
        let out = curl_send(&peers, &proxy, listener, *implicit, &token, &subject);
        assert!(
            out.status.success(),
            "curl via {listener}: {}\nproxy log:\n{}",
            text(&out),
            proxy.log()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("AUTH OAUTHBEARER"), "{stderr}");
        assert!(stderr.contains("235 2.7.0"), "{stderr}");
        let log = proxy.log();
        assert!(!log.contains(&token), "a token reached the proxy's log");
    }
    // The proxy logs a connection when the relay ends, just after curl quits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log().matches("result=\"relayed\"").count() < 2 {
        assert!(Instant::now() < deadline, "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn smtplib_sends_with_oauthbearer_and_xoauth2() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (listener, implicit) in LISTENERS {
        for mech in ["oauthbearer", "xoauth2"] {
            for ir in [true, false] {
                let token = mint_token(&peers, "alice", SCOPE, 300);
                let subject = unique(&format!("smtplib-{mech}-{ir}"));
                let login = SmtpLogin {
                    mode: mech,
                    secret: &token,
                    initial_response: ir,
                };
                let out = smtplib(&peers, &proxy, (listener, *implicit), login, &subject);
                assert_eq!(
                    out.trim(),
                    "SENT",
                    "{listener} {mech} ir={ir}\nproxy log:\n{}",
                    proxy.log()
                );
            }
        }
    }
    let log = proxy.log();
    assert!(log.contains("mechanism=\"XOAUTH2\""), "{log}");
    assert!(log.contains("mechanism=\"OAUTHBEARER\""), "{log}");
}

#[test]
fn msmtp_sends_with_oauthbearer_and_xoauth2() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token_file = proxy.dir.path().join("token");
    for (listener, implicit) in LISTENERS {
        for mech in ["oauthbearer", "xoauth2"] {
            std::fs::write(&token_file, mint_token(&peers, "alice", SCOPE, 300))
                .expect("token file");
            let subject = unique(&format!("msmtp-{mech}"));
            let message =
                std::fs::File::open(message_file(proxy.dir.path(), &subject)).expect("message");
            let out = bounded("msmtp")
                .args(["--host=127.0.0.1", "--tls=on", "--timeout=30"])
                .arg(format!("--port={}", proxy.port(listener)))
                .arg(format!(
                    "--tls-starttls={}",
                    if *implicit { "off" } else { "on" }
                ))
                .arg(format!("--tls-trust-file={}", peers.ca()))
                .arg(format!("--auth={mech}"))
                .args(["--user=alice@example.com", "--domain=msmtp.example"])
                .arg(format!("--passwordeval=cat {}", path_str(&token_file)))
                .args(["--from=alice@example.com", "bob@example.com"])
                .stdin(Stdio::from(message))
                .output()
                .expect("run msmtp");
            assert!(
                out.status.success(),
                "msmtp {listener} {mech}: {}\nproxy log:\n{}",
                text(&out),
                proxy.log()
            );
        }
    }
}

/// The decisive test: alice's token sends through the SMTP listener, bob's
/// token reads it back through the IMAP listener, and Postfix recorded
/// alice as the authenticated sender (the LOGIN the proxy passed).
#[test]
fn alice_sends_and_bob_reads_through_the_proxy() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (listener, implicit) in LISTENERS {
        let token = mint_token(&peers, "alice", SCOPE, 300);
        let subject = unique(&format!("decisive-{listener}"));
        let out = curl_send(&peers, &proxy, listener, *implicit, &token, &subject);
        assert!(
            out.status.success(),
            "sending: {}\nproxy log:\n{}",
            text(&out),
            proxy.log()
        );
        let message = read_from_bob(&peers, &proxy, &subject);
        assert!(
            message.contains(&format!("Subject: {subject}")),
            "{message}"
        );
        assert!(
            message.contains("Authenticated sender: alice@example.com"),
            "{message}"
        );
        // Postfix recorded the client's own EHLO name (XCLIENT HELO=), not
        // the proxy's ("[127.0.0.1]").
        assert!(
            message.contains("from curl.example (localhost [127.0.0.1])"),
            "{message}"
        );
    }
}

#[test]
fn ehlo_advertises_the_upstream_keywords_and_our_auth() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    // Before TLS on the STARTTLS listener: STARTTLS, no AUTH.
    let mut raw = Raw::connect(proxy.port("submission"), false, &peers.ca());
    raw.expect_line();
    raw.send("EHLO raw.example\r\n");
    let before = raw.until("250 ");
    assert_eq!(before[0], "250-proxy.test");
    assert!(
        before.iter().any(|l| l == "250-SIZE 10240000"),
        "{before:?}"
    );
    assert!(before.iter().any(|l| l.ends_with("STARTTLS")), "{before:?}");
    assert!(!before.iter().any(|l| l.contains("AUTH")), "{before:?}");
    for (listener, implicit) in LISTENERS {
        let (_raw, ehlo) = raw_ready(&peers, &proxy, listener, *implicit);
        assert_eq!(ehlo[0], "250-proxy.test");
        assert!(
            ehlo.iter()
                .any(|l| l[4..] == *"AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN"),
            "{ehlo:?}"
        );
        for gone in ["STARTTLS", "XCLIENT", "XFORWARD", "AUTH PLAIN LOGIN"] {
            assert!(
                !ehlo.iter().any(|l| l[4..].starts_with(gone)),
                "{gone} in {ehlo:?}"
            );
        }
        for kept in ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING"] {
            assert!(
                ehlo.iter().any(|l| l[4..] == *kept),
                "{kept} not in {ehlo:?}"
            );
        }
        assert_eq!(ehlo.iter().filter(|l| l.starts_with("250 ")).count(), 1);
    }
    // HELO: a one-line reply.
    let mut raw = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    raw.expect_line();
    raw.send("HELO raw.example\r\n");
    assert_eq!(raw.expect_line(), "250 proxy.test");
    // The upstream was asked once, not per client.
    let log = proxy.log();
    assert_eq!(log.matches("learned EHLO keywords").count(), 1, "{log}");
}

#[test]
fn invalid_token_gets_the_error_challenge_then_535() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (listener, implicit) in LISTENERS {
        let (mut raw, _) = raw_ready(&peers, &proxy, listener, *implicit);
        raw.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(Some("alice@example.com"), "not-a-valid-token")
        ));
        let challenge = raw.expect_line();
        let json = challenge
            .strip_prefix("334 ")
            .unwrap_or_else(|| panic!("{challenge}"));
        let json: serde_json::Value =
            serde_json::from_slice(&b64_decode(json)).expect("challenge JSON");
        assert_eq!(json["status"], "invalid_token", "{json}");
        raw.send("AQ==\r\n");
        assert_eq!(
            raw.expect_line(),
            "535 5.7.8 Authentication credentials invalid"
        );
        // XOAUTH2, with the 334 continuation instead of an initial response.
        raw.send("AUTH XOAUTH2\r\n");
        assert_eq!(raw.expect_line(), "334 ");
        raw.send(&format!(
            "{}\r\n",
            xoauth2("alice@example.com", "still-not-valid")
        ));
        let challenge = raw.expect_line();
        let json = b64_decode(challenge.strip_prefix("334 ").expect("challenge"));
        let json: serde_json::Value = serde_json::from_slice(&json).expect("challenge JSON");
        assert!(json["status"].is_string(), "{json}");
        raw.send("\r\n");
        assert_eq!(
            raw.expect_line(),
            "535 5.7.8 Authentication credentials invalid"
        );
        raw.send("QUIT\r\n");
        assert_eq!(raw.expect_line(), "221 2.0.0 Bye");
    }
}

#[test]
fn a_token_for_someone_else_is_refused() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
    let bobs = mint_token(&peers, "bob", SCOPE, 300);
    raw.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(Some("alice@example.com"), &bobs)
    ));
    assert!(raw.expect_line().starts_with("334 "));
    raw.send("AQ==\r\n");
    assert_eq!(
        raw.expect_line(),
        "535 5.7.8 Authentication credentials invalid"
    );
}

#[test]
fn pre_auth_protocol_replies() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let port = proxy.port("submission");
    // Before EHLO and before TLS.
    let mut raw = Raw::connect(port, false, &peers.ca());
    raw.expect_line();
    raw.send("AUTH OAUTHBEARER\r\n");
    assert_eq!(raw.expect_line(), "503 5.5.1 EHLO first");
    raw.send("MAIL FROM:<alice@example.com>\r\n");
    assert_eq!(raw.expect_line(), "530 5.7.0 Authentication required");
    raw.send("EHLO raw.example\r\n");
    raw.until("250 ");
    raw.send("AUTH OAUTHBEARER\r\n");
    assert_eq!(
        raw.expect_line(),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    raw.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLWFwcC1wYXNzd29yZA==\r\n");
    assert_eq!(
        raw.expect_line(),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    for (cmd, reply) in [
        (
            "RCPT TO:<bob@example.com>",
            "530 5.7.0 Authentication required",
        ),
        ("DATA", "530 5.7.0 Authentication required"),
        ("BDAT 10 LAST", "530 5.7.0 Authentication required"),
        ("XCLIENT LOGIN=bob@example.com", "500 5.5.2 Unknown command"),
        ("FOO", "500 5.5.2 Unknown command"),
        ("NOOP", "250 2.0.0 OK"),
        ("RSET", "250 2.0.0 OK"),
        ("EHLO", "501 5.5.4 Syntax: EHLO hostname"),
        (
            "STARTTLS now",
            "501 5.5.4 Syntax error (no parameters allowed)",
        ),
    ] {
        raw.send(&format!("{cmd}\r\n"));
        assert_eq!(raw.expect_line(), reply, "{cmd}");
    }
    raw.send("HELP\r\n");
    assert!(raw.expect_line().starts_with("214 "));
    let long = "x".repeat(70 * 1024);
    raw.send(&format!("NOOP {long}\r\n"));
    assert_eq!(raw.expect_line(), "500 5.5.6 Line too long");
    raw.send("QUIT\r\n");
    assert_eq!(raw.expect_line(), "221 2.0.0 Bye");
    assert_eq!(raw.line(), None);

    // After TLS: AUTH argument errors.
    let (mut raw, _) = raw_ready(&peers, &proxy, "submission", false);
    raw.send("STARTTLS\r\n");
    assert_eq!(raw.expect_line(), "502 5.5.1 TLS is already active");
    for (cmd, reply) in [
        (
            "AUTH CRAM-MD5",
            "504 5.5.4 Unsupported authentication mechanism",
        ),
        ("AUTH OAUTHBEARER *", "501 5.5.2 Authentication cancelled"),
        (
            "AUTH OAUTHBEARER not!base64",
            "501 5.5.2 Invalid base64 data in authentication response",
        ),
        (
            "AUTH",
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
        ),
    ] {
        raw.send(&format!("{cmd}\r\n"));
        assert_eq!(raw.expect_line(), reply, "{cmd}");
    }
    raw.send("AUTH XOAUTH2\r\n");
    assert_eq!(raw.expect_line(), "334 ");
    raw.send("*\r\n");
    assert_eq!(raw.expect_line(), "501 5.5.2 Authentication cancelled");
    // `=` is an empty initial response: a malformed bearer message.
    raw.send("AUTH OAUTHBEARER =\r\n");
    assert!(raw.expect_line().starts_with("334 "));
    raw.send("AQ==\r\n");
    assert_eq!(
        raw.expect_line(),
        "535 5.7.8 Authentication credentials invalid"
    );
}

#[test]
fn too_many_failures_close_the_connection() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.max_auth_failures = 2;
    let proxy = Proxy::start(&peers, &opts);
    let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
    for _ in 0..2 {
        raw.send(&format!(
            "AUTH XOAUTH2 {}\r\n",
            xoauth2("alice@example.com", "bad-token")
        ));
        assert!(raw.expect_line().starts_with("334 "));
        raw.send("AQ==\r\n");
        assert_eq!(
            raw.expect_line(),
            "535 5.7.8 Authentication credentials invalid"
        );
    }
    assert_eq!(
        raw.expect_line(),
        "421 4.7.0 proxy.test Too many authentication failures"
    );
    assert_eq!(raw.line(), None);
    proxy.wait_log("result=\"too-many-failures\"");
}

#[test]
fn plaintext_injected_behind_starttls_is_discarded() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let mut raw = Raw::connect(proxy.port("submission"), false, &peers.ca());
    raw.expect_line();
    raw.send("EHLO raw.example\r\n");
    raw.until("250 ");
    // One write: STARTTLS and commands a man in the middle appended.
    raw.send("STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<evil@example.com>\r\n");
    assert_eq!(raw.expect_line(), "220 2.0.0 Ready to start TLS");
    raw.upgrade();
    raw.send("NOOP\r\n");
    // The first reply inside TLS answers our NOOP, not the injected EHLO.
    assert_eq!(raw.expect_line(), "250 2.0.0 OK");
    // And the EHLO state was reset by STARTTLS.
    raw.send("AUTH OAUTHBEARER\r\n");
    assert_eq!(raw.expect_line(), "503 5.5.1 EHLO first");
}

#[test]
fn commands_pipelined_after_auth_reach_postfix_in_order() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    raw.send(&format!(
        "AUTH XOAUTH2 {}\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nRSET\r\nQUIT\r\n",
        xoauth2("alice@example.com", &token)
    ));
    assert_eq!(raw.expect_line(), "235 2.7.0 Authentication successful");
    assert!(raw.expect_line().starts_with("250 2.1.0"), "MAIL");
    assert!(
        raw.expect_line().starts_with("250 2.1.5"),
        "RCPT accepted: Postfix sees alice as authenticated"
    );
    assert!(raw.expect_line().starts_with("250 2.0.0"), "RSET");
    assert!(
        raw.expect_line().starts_with("221 2.0.0"),
        "QUIT from Postfix"
    );
    assert_eq!(raw.line(), None);
    // A second AUTH after login reaches Postfix, which refuses it.
    let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
    raw.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert_eq!(raw.expect_line(), "235 2.7.0 Authentication successful");
    raw.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert!(raw.expect_line().starts_with("503 5.5.1"));
}

#[test]
fn password_passthrough_with_an_app_password() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    for (listener, implicit) in LISTENERS {
        for mode in ["plain", "login"] {
            let subject = unique(&format!("passthrough-{mode}"));
            let login = SmtpLogin {
                mode,
                secret: "alice-app-password",
                initial_response: true,
            };
            let out = smtplib(&peers, &proxy, (listener, *implicit), login, &subject);
            assert_eq!(
                out.trim(),
                "SENT",
                "{listener} {mode}\nproxy log:\n{}",
                proxy.log()
            );
        }
    }
    let subject = unique("passthrough-read");
    let login = SmtpLogin {
        mode: "plain",
        secret: "alice-app-password",
        initial_response: false,
    };
    let out = smtplib(&peers, &proxy, ("submissions", true), login, &subject);
    assert_eq!(out.trim(), "SENT");
    let message = read_from_bob(&peers, &proxy, &subject);
    assert!(
        message.contains("Authenticated sender: alice@example.com"),
        "{message}"
    );
    // A wrong password: Postfix's own 535 reaches the client.
    let login = SmtpLogin {
        mode: "plain",
        secret: "wrong-password",
        initial_response: true,
    };
    let out = smtplib(&peers, &proxy, ("submissions", true), login, &unique("x"));
    assert!(out.starts_with("ERROR 535"), "{out}");
    let log = proxy.log();
    assert!(
        !log.contains("alice-app-password"),
        "a password reached the log"
    );
    assert!(
        !log.contains("wrong-password"),
        "a password reached the log"
    );
}

#[test]
fn password_mechanisms_are_refused_without_passthrough() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.passthrough = false;
    let proxy = Proxy::start(&peers, &opts);
    let (mut raw, ehlo) = raw_ready(&peers, &proxy, "submissions", true);
    assert!(
        ehlo.iter().any(|l| l[4..] == *"AUTH OAUTHBEARER XOAUTH2"),
        "{ehlo:?}"
    );
    raw.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLWFwcC1wYXNzd29yZA==\r\n");
    assert_eq!(
        raw.expect_line(),
        "504 5.5.4 Unsupported authentication mechanism"
    );
    raw.send("AUTH LOGIN\r\n");
    assert_eq!(
        raw.expect_line(),
        "504 5.5.4 Unsupported authentication mechanism"
    );
}

#[test]
fn provider_down_is_a_temporary_failure() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    peers.control("stop oidc");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
        raw.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(None, &token)
        ));
        assert_eq!(
            raw.expect_line(),
            "454 4.7.0 Temporary authentication failure"
        );
        raw.send("NOOP\r\n");
        assert_eq!(raw.expect_line(), "250 2.0.0 OK", "the session goes on");
    }));
    peers.control("start oidc");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    // The provider is back (it keeps tokens in memory: mint a new one).
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let (mut raw, _) = raw_ready(&peers, &proxy, "submissions", true);
    raw.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(None, &token)
    ));
    assert_eq!(raw.expect_line(), "235 2.7.0 Authentication successful");
}

#[test]
fn postfix_down_is_a_temporary_failure() {
    let peers = peers_exclusive();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    // Learn the keywords while Postfix is up.
    let (_raw, ehlo_up) = raw_ready(&peers, &proxy, "submissions", true);
    peers.control("stop postfix");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (mut raw, ehlo) = raw_ready(&peers, &proxy, "submissions", true);
        assert_eq!(ehlo, ehlo_up, "the last known keywords are still promised");
        let token = mint_token(&peers, "alice", SCOPE, 300);
        raw.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(None, &token)
        ));
        let reply = raw.expect_line();
        assert!(reply.starts_with("454 4.7.0 "), "{reply}");
        raw.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLWFwcC1wYXNzd29yZA==\r\n");
        let reply = raw.expect_line();
        assert!(reply.starts_with("454 4.7.0 "), "{reply}");
        raw.send("QUIT\r\n");
        assert_eq!(raw.expect_line(), "221 2.0.0 Bye");
        // A proxy that never saw Postfix still answers EHLO (safe defaults).
        let fresh = Proxy::start(&peers, &ProxyOptions::new(&peers));
        let (_raw, ehlo) = raw_ready(&peers, &fresh, "submissions", true);
        assert!(ehlo.iter().any(|l| l[4..] == *"PIPELINING"), "{ehlo:?}");
        assert!(
            ehlo.iter().any(|l| l[4..].starts_with("AUTH OAUTHBEARER")),
            "{ehlo:?}"
        );
    }));
    peers.control("start postfix");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    // Postfix is back: the client retries and succeeds.
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let subject = unique("after-postfix-restart");
    let out = curl_send(&peers, &proxy, "submissions", true, &token, &subject);
    assert!(
        out.status.success(),
        "{}\nproxy log:\n{}",
        text(&out),
        proxy.log()
    );
}
