//! Running it in production, end to end against the real peers: SIGHUP
//! reload under load, graceful stop during a large FETCH, the shutdown
//! timeout, Prometheus metrics, systemd notifications and the log formats.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SCOPE: &str = "openid email profile";

/// An IMAP session over implicit TLS, logged in with OAUTHBEARER.
fn logged_in(port: u16, ca: &str, user: &str, token: &str) -> Raw {
    let mut c = Raw::connect(port, true, ca);
    assert!(c.expect_line().starts_with("* OK"));
    c.send(&format!(
        "a1 AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(user), token)
    ));
    let login = c.until("a1 ");
    assert!(
        login.last().is_some_and(|l| l.starts_with("a1 OK")),
        "{login:?}"
    );
    c
}

/// Fetches the Subject of message 1 in an open session.
fn subject(c: &mut Raw, tag: &str) -> Vec<String> {
    c.send(&format!(
        "{tag}s SELECT INBOX\r\n{tag} FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
    ));
    c.until(&format!("{tag} "))
}

/// curl reads message 1's Subject over implicit TLS, trusting `ca`.
fn curl_subject(port: u16, ca: &str, user: &str, token: &str) -> std::process::Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", ca, "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!(
            "imaps://localhost:{port}/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%20(SUBJECT)"
        ))
        .arg("-u")
        .arg(format!("{user}:"))
        .arg("--oauth2-bearer")
        .arg(token))
}

fn make_certs(dir: &std::path::Path) -> (String, String, String) {
    let out = run(Command::new("bash")
        .arg(manifest_dir().join("certs/make-test-certs.sh"))
        .arg(dir));
    assert!(out.status.success(), "make-test-certs.sh failed");
    let p = |f: &str| path_str(&dir.join(f));
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn introspect_directory(peers: &Peers) -> String {
    let basic = &peers.info["oidc"]["basic_client"];
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{}\"\nendpoint.method = \"introspect\"\nauth.method = \"basic\"\nauth.username = \"{}\"\nauth.secret = \"{}\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "introspection"]),
        basic[0].as_str().unwrap_or_default(),
        basic[1].as_str().unwrap_or_default(),
    )
}

fn reset_provider_stats(peers: &Peers) {
    let admin = peers.str(&["oidc", "admin"]);
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", "POST"])
        .arg(format!("{admin}/stats/reset")));
    assert!(out.status.success());
}

#[test]
fn reload_under_load_keeps_sessions_and_swaps_certificate_and_provider() {
    // Exclusive: the provider's request counters must be this test's alone.
    let peers = peers_exclusive();
    let opts = ProxyOptions::new(&peers);
    let proxy = Proxy::start(&peers, &opts);
    let port = proxy.port("imaps");
    let old_ca = peers.ca();
    let token = mint_token(&peers, "alice", SCOPE, 600);

    // Sessions logged in under the old certificate and provider.
    let mut sessions: Vec<Raw> = (0..4)
        .map(|_| logged_in(port, &old_ca, ALICE, &token))
        .collect();

    // New certificate (from a new CA) and the provider's introspection
    // endpoint instead of UserInfo.
    let certs = tempfile::tempdir().expect("tempdir");
    let (new_ca, new_cert, new_key) = make_certs(certs.path());
    let either_ca = certs.path().join("both.pem");
    std::fs::write(
        &either_ca,
        [
            std::fs::read(&old_ca).unwrap(),
            std::fs::read(&new_ca).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let either_ca = path_str(&either_ca);
    let mut new_opts = ProxyOptions::new(&peers);
    new_opts.directory = introspect_directory(&peers);
    let text = Proxy::config_text(&peers, &new_opts, proxy.ports())
        .replace(&peers.str(&["certs", "cert"]), &new_cert)
        .replace(&peers.str(&["certs", "key"]), &new_key);

    // Load: new logins keep arriving while the configuration is swapped;
    // each must succeed under the old or the new configuration.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, done, either_ca, token) =
            (stop.clone(), done.clone(), either_ca.clone(), token.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = curl_subject(port, &either_ca, ALICE, &token);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Welcome")
                {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
            failures
        })
    };
    let wait_done = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "the load thread made no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_done(2);
    std::fs::write(&proxy.config_path, text).unwrap();
    proxy.signal("HUP");
    proxy.wait_log("configuration reloaded");
    let before = done.load(Ordering::Relaxed);
    wait_done(before + 3);
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().expect("load thread");
    assert!(
        failures.is_empty(),
        "logins failed during the reload: {failures:?}\n{}",
        proxy.log()
    );

    // The established sessions go on, on their old TLS sessions.
    for (i, c) in sessions.iter_mut().enumerate() {
        let lines = subject(c, &format!("t{i}"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Welcome alice@example.com"))
                && lines.last().is_some_and(|l| l.contains(" OK")),
            "session {i} after reload: {lines:?}"
        );
    }

    // New clients see the new certificate and are validated by introspection.
    reset_provider_stats(&peers);
    let out = curl_subject(port, &new_ca, ALICE, &token);
    assert!(
        out.status.success(),
        "new CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = provider_stats(&peers);
    assert!(
        stats["introspection"].as_u64() >= Some(1) && stats["userinfo"] == 0,
        "{stats}"
    );
    let out = curl_subject(port, &old_ca, ALICE, &token);
    assert!(
        !out.status.success(),
        "the old certificate is still served to new clients"
    );
}

#[test]
fn broken_config_on_reload_is_refused_and_the_old_one_keeps_serving() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "bob", SCOPE, 300);
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    for broken in [
        "[server\nthis is not TOML".to_string(),
        good.replace("protocol = \"imap\"", "protocol = \"nntp\""),
        good.replace(&peers.str(&["certs", "cert"]), "/nonexistent/cert.pem"),
    ] {
        std::fs::write(&proxy.config_path, broken).unwrap();
        let refusals = proxy.log().matches("reload refused").count();
        proxy.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.log().matches("reload refused").count() == refusals {
            assert!(Instant::now() < deadline, "no refusal:\n{}", proxy.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = curl_subject(proxy.port("imaps"), &peers.ca(), BOB, &token);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Welcome bob"),
            "the old configuration stopped serving: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
    }
    let log = proxy.log();
    assert!(log.contains("`nntp` is not one of"), "{log}");
    assert!(log.contains("/nonexistent/cert.pem"), "{log}");
}

#[test]
fn reload_binds_new_listeners_and_closes_removed_ones() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let extra_port = free_port();
    let base = std::fs::read_to_string(&proxy.config_path).unwrap();
    let with_extra = format!(
        "{base}\n[listener.imaps-extra]\nprotocol = \"imap\"\nbind = \"127.0.0.1:{extra_port}\"\ntls = \"implicit\"\ndirectory = \"test\"\nupstream = \"dovecot\"\n"
    );
    std::fs::write(&proxy.config_path, with_extra).unwrap();
    proxy.signal("HUP");
    proxy.wait_log(&format!(
        "listening listener=imaps-extra address=127.0.0.1:{extra_port}"
    ));
    let out = curl_subject(extra_port, &peers.ca(), ALICE, &token);
    assert!(
        out.status.success(),
        "new listener: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A session on the listener that is about to go away.
    let mut kept = logged_in(extra_port, &peers.ca(), ALICE, &token);
    std::fs::write(&proxy.config_path, &base).unwrap();
    proxy.signal("HUP");
    proxy.wait_log(&format!("stopped listening address=127.0.0.1:{extra_port}"));
    assert!(TcpStream::connect(("127.0.0.1", extra_port)).is_err());
    let lines = subject(&mut kept, "k");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("k OK")),
        "the session on the removed listener: {lines:?}"
    );
    let out = curl_subject(proxy.port("imaps"), &peers.ca(), ALICE, &token);
    assert!(out.status.success());
}

/// Saves a message of about `size` bytes into `user`'s INBOX (message 2).
fn seed_large_message(peers: &Peers, user: &str, size: usize) -> usize {
    let mut message =
        format!("From: <postmaster@example.com>\r\nTo: <{user}>\r\nSubject: large\r\n\r\n")
            .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-\r\n";
    while message.len() < size {
        message.extend_from_slice(line);
    }
    let mut child = Command::new("doveadm")
        .args(["-c", &peers.str(&["dovecot", "config"]), "save", "-u", user])
        .args(["-m", "INBOX"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("doveadm");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&message)
        .expect("write message");
    assert!(child.wait().expect("doveadm").success());
    message.len()
}

#[test]
fn graceful_stop_lets_an_in_flight_large_fetch_finish() {
    let peers = peers_read();
    let size = seed_large_message(&peers, BOB, 32 * 1024 * 1024);
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = "shutdown-timeout = \"60s\"\n".into();
    let mut proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "bob", SCOPE, 300);
    let mut c = logged_in(proxy.port("imaps"), &peers.ca(), BOB, &token);
    c.send("a2 SELECT INBOX\r\n");
    c.until("a2 OK");
    c.send("a3 FETCH 2 BODY.PEEK[]\r\n");
    let first = c.expect_line();
    assert!(first.starts_with("* 2 FETCH"), "{first}");

    // The FETCH is in flight: most of the 32 MiB is still in the upstream.
    proxy.signal("TERM");
    // Logged once the listening sockets are closed.
    proxy.wait_log("shutting down");
    assert!(
        TcpStream::connect(("127.0.0.1", proxy.port("imaps"))).is_err(),
        "still accepting new connections during shutdown"
    );
    let mut received = 0usize;
    loop {
        let line = c.expect_line();
        if line.starts_with("a3 ") {
            assert!(line.starts_with("a3 OK"), "{line}");
            break;
        }
        received += line.len() + 2;
    }
    // The literal plus the closing ")" line.
    assert!(
        received >= size,
        "received {received} of {size} bytes:\n{}",
        proxy.log()
    );
    assert!(
        proxy.wait_exit(Duration::from_millis(200)).is_none(),
        "the proxy exited while a session was open"
    );
    c.send("a4 LOGOUT\r\n");
    c.until("a4 ");
    drop(c);
    let status = proxy.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "the proxy did not exit after the last session ended:\n{}",
            proxy.log()
        )
    });
    assert!(status.success(), "exit status {status}");
    assert!(proxy.log().contains("every session finished"));
}

#[test]
fn shutdown_timeout_closes_sessions_that_linger() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = "shutdown-timeout = \"2s\"\n".into();
    let mut proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = logged_in(proxy.port("imaps"), &peers.ca(), ALICE, &token);
    let started = Instant::now();
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy did not exit after its shutdown timeout");
    let took = started.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(proxy.log().contains("closing the remaining sessions"));
    c.send("a2 NOOP\r\n");
    assert_eq!(c.line(), None, "the session survived the shutdown");
}

fn http_get(port: u16, path: &str) -> (String, String) {
    // The metrics endpoint is bound just after the mail listeners.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "connect to metrics: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

/// The value of one sample line (`name{labels} value`) in a scrape.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_what_the_test_did() {
    let peers = peers_read();
    let metrics_port = free_port();
    let mut opts = ProxyOptions::new(&peers);
    opts.extra = format!("[server.metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n");
    let proxy = Proxy::start(&peers, &opts);
    let (head, body) = http_get(metrics_port, "/healthz");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok\n");
    let port = proxy.port("imaps");
    let token = mint_token(&peers, "alice", SCOPE, 300);
    // The harness's readiness probes are connections too: count from here.
    let (_, baseline) = http_get(metrics_port, "/metrics");
    let closed_before = proxy.log().matches("connection closed").count();

    // Two good logins, one refused token, one password login.
    for _ in 0..2 {
        let out = curl_subject(port, &peers.ca(), ALICE, &token);
        assert!(out.status.success());
    }
    let mut c = Raw::connect(port, true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), "not-a-valid-token")
    ));
    assert!(c.expect_line().starts_with("+ "));
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO"));
    c.send("b LOGOUT\r\n");
    c.until("b ");
    drop(c);
    let mut c = Raw::connect(port, true, &peers.ca());
    c.expect_line();
    c.send("a LOGIN alice@example.com alice-app-password\r\n");
    assert!(c.until("a ").last().unwrap().starts_with("a OK"));
    c.send("b LOGOUT\r\n");
    c.until("b ");
    drop(c);

    // Every connection has been logged as closed before scraping.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log().matches("connection closed").count() < closed_before + 4 {
        assert!(Instant::now() < deadline, "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (head, text) = http_get(metrics_port, "/metrics");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let p = "oauthbearer_proxy_";
    let login = |mech: &str, result: &str| {
        sample(
            &text,
            &format!(
                "{p}logins_total{{listener=\"imaps\",mechanism=\"{mech}\",result=\"{result}\"}}"
            ),
        )
    };
    assert_eq!(login("OAUTHBEARER", "ok"), 2.0, "{text}");
    assert_eq!(login("OAUTHBEARER", "refused"), 1.0, "{text}");
    assert_eq!(login("LOGIN", "ok"), 1.0, "{text}");
    let imaps = "{listener=\"imaps\"}";
    let total = format!("{p}connections_total{imaps}");
    assert_eq!(sample(&text, &total) - sample(&baseline, &total), 4.0);
    assert_eq!(sample(&text, &format!("{p}connections_open{imaps}")), 0.0);
    let dir = "{directory=\"test\"}";
    assert_eq!(
        sample(&text, &format!("{p}provider_request_seconds_count{dir}")),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{p}provider_errors_total{dir}")),
        0.0
    );
    let up = "{upstream=\"dovecot\"}";
    assert_eq!(
        sample(&text, &format!("{p}upstream_connect_seconds_count{up}")),
        3.0,
        "{text}"
    );
    let bytes = |dir: &str| {
        sample(
            &text,
            &format!("{p}relayed_bytes_total{{listener=\"imaps\",direction=\"{dir}\"}}"),
        )
    };
    assert!(
        bytes("to-client") > 100.0 && bytes("to-upstream") > 10.0,
        "{text}"
    );
    let (head, _) = http_get(metrics_port, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn systemd_notifications_ready_status_reloading_stopping() {
    let peers = peers_read();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut opts = ProxyOptions::new(&peers);
    opts.env = vec![
        ("NOTIFY_SOCKET".into(), path_str(&socket_path)),
        ("WATCHDOG_USEC".into(), "400000".into()),
    ];
    let mut proxy = Proxy::start(&peers, &opts);
    let mut recv = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(
        first.starts_with("READY=1\nSTATUS=") && first.contains("sessions open"),
        "{first:?}"
    );
    // READY comes only after every listener is bound.
    for port in proxy.ports().values() {
        assert!(TcpStream::connect(("127.0.0.1", *port)).is_ok());
    }
    let mut seen = vec![first];
    // Watchdog pings at half the interval.
    let started = Instant::now();
    while seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 2 {
        seen.push(recv());
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{seen:?}");
    proxy.signal("HUP");
    let until = |recv: &mut dyn FnMut() -> String, seen: &mut Vec<String>, what: &str| loop {
        let m = recv();
        seen.push(m.clone());
        if m.contains(what) {
            return m;
        }
    };
    until(&mut recv, &mut seen, "RELOADING=1");
    until(&mut recv, &mut seen, "READY=1");
    proxy.signal("TERM");
    until(&mut recv, &mut seen, "STOPPING=1");
    assert!(proxy.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn json_logs_and_journal_mode_without_timestamps() {
    let peers = peers_read();
    let token = mint_token(&peers, "alice", SCOPE, 300);
    // JSON: every line is one JSON object; the token never appears.
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = "log-format = \"json\"\n".into();
    opts.log_level = "trace";
    let proxy = Proxy::start(&peers, &opts);
    let out = curl_subject(proxy.port("imaps"), &peers.ca(), ALICE, &token);
    assert!(out.status.success());
    let log = proxy.wait_log("\"user\":\"alice@example.com\"");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    assert!(log.contains("\"user\":\"alice@example.com\""), "{log}");
    assert!(!log.contains(&token), "the token reached the log");
    drop(proxy);

    // Under systemd (JOURNAL_STREAM set) the journal adds the timestamps.
    let mut opts = ProxyOptions::new(&peers);
    opts.env = vec![("JOURNAL_STREAM".into(), "8:12345".into())];
    opts.log_level = "info";
    let proxy = Proxy::start(&peers, &opts);
    let log = proxy.wait_log("listening");
    for line in log.lines() {
        assert!(
            line.starts_with(" INFO") || line.starts_with(" WARN") || line.starts_with("INFO"),
            "a journal line starts with a timestamp or something else: {line:?}"
        );
        assert!(!line.starts_with("20"), "{line}");
    }
}

/// Sends SIGHUP and waits until the proxy logged one more reload.
fn reload(proxy: &Proxy) {
    let before = proxy.log().matches("configuration reloaded").count();
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < deadline, "no reload:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_keeps_the_token_cache_of_an_unchanged_directory() {
    // Exclusive: the provider's request counters must be this test's alone.
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = format!("{}cache.ttl = \"5m\"\n", opts.directory);
    let proxy = Proxy::start(&peers, &opts);
    let port = proxy.port("imaps");
    let token = mint_token(&peers, "alice", SCOPE, 600);
    let login = || {
        let out = curl_subject(port, &peers.ca(), ALICE, &token);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Welcome"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
    };
    let userinfo = || provider_stats(&peers)["userinfo"].as_u64();
    reset_provider_stats(&peers);
    login();
    login();
    assert_eq!(
        userinfo(),
        Some(1),
        "the cache did not answer the second login"
    );

    // A reload (say, for a renewed certificate) with the directory unchanged:
    // the token is not asked about again.
    let config = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(&proxy.config_path, format!("{config}\n# renewed\n")).unwrap();
    reload(&proxy);
    assert!(
        proxy
            .log()
            .contains("unchanged directory keeps its token cache"),
        "{}",
        proxy.log()
    );
    login();
    assert_eq!(userinfo(), Some(1), "a reload emptied the token cache");

    // A changed directory starts with an empty cache: its answers may differ.
    std::fs::write(
        &proxy.config_path,
        config.replace("cache.ttl = \"5m\"", "cache.ttl = \"4m\""),
    )
    .unwrap();
    reload(&proxy);
    login();
    assert_eq!(userinfo(), Some(2), "a changed directory kept old answers");
}
