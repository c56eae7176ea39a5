//! Hardening end to end (issue 6): every limit of `[server.limits]`
//! enforced with the protocol's reply, TLS versions and ALPN, against the
//! real peers. Faults of the provider and the upstream are in faults_e2e.rs,
//! load and slowloris in load_e2e.rs.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";

fn login(c: &mut Raw, tag: &str, token: &str) -> Vec<String> {
    c.send(&format!(
        "{tag} AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), token)
    ));
    c.until(&format!("{tag} "))
}

#[test]
fn pre_auth_timeout_says_bye_and_closes_and_bounds_the_tls_handshake() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.pre_auth_timeout = "2s";
    let proxy = Proxy::start(&peers, &opts);
    let mut c = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
    assert!(c.expect_line().starts_with("* OK"));
    let t = Instant::now();
    // Half a command line does not keep the connection alive.
    c.send("a NO");
    assert_eq!(c.expect_line(), "* BYE Disconnected for inactivity.");
    assert!(c.line().is_none(), "closed after the BYE");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // An implicit-TLS connection that never starts its handshake.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", proxy.port("imaps"))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut tcp, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    proxy.wait_log("TLS handshake timed out");
}

#[test]
fn idle_timeout_after_login_says_bye_but_active_sessions_stay() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "idle-timeout = \"2s\"\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    // An active session: a NOOP every second for 5 s stays open.
    let mut active = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    active.expect_line();
    assert!(login(&mut active, "a", &token)
        .last()
        .unwrap()
        .starts_with("a OK"));
    let mut idle = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    idle.expect_line();
    assert!(login(&mut idle, "a", &token)
        .last()
        .unwrap()
        .starts_with("a OK"));
    let t = Instant::now();
    for i in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        active.send(&format!("n{i} NOOP\r\n"));
        assert!(active
            .until(&format!("n{i} "))
            .last()
            .unwrap()
            .starts_with(&format!("n{i} OK")));
    }
    // The idle one was told and closed after about 2 s.
    assert_eq!(idle.expect_line(), "* BYE Disconnected for inactivity.");
    assert!(idle.line().is_none());
    assert!(t.elapsed() < Duration::from_secs(8));
    proxy.wait_log("result=\"idle-timeout\"");
}

#[test]
fn sasl_continuation_longer_than_max_line_is_refused_and_the_session_goes_on() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "max-line = \"8KiB\"\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send("a AUTHENTICATE OAUTHBEARER\r\n");
    assert_eq!(c.expect_line(), "+ ");
    c.send(&format!("{}\r\n", "QUFB".repeat(4 * 1024)));
    assert_eq!(c.expect_line(), "a BAD Authentication response too long.");
    // A SASL-IR over the limit.
    c.send(&format!(
        "b AUTHENTICATE XOAUTH2 {}\r\n",
        "QUFB".repeat(4 * 1024)
    ));
    assert!(c.expect_line().starts_with("* BAD"));
    c.send("c NOOP\r\n");
    assert!(c.expect_line().starts_with("c OK"));
}

#[test]
fn connections_per_ip_over_the_limit_get_bye_and_others_are_unaffected() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "max-connections-per-ip = 3\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let mut held: Vec<Raw> = (0..3)
        .map(|_| {
            let mut c = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
            assert!(c.expect_line().starts_with("* OK"));
            c
        })
        .collect();
    // The fourth from the same address, plaintext and over implicit TLS.
    let mut over = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
    assert_eq!(
        over.expect_line(),
        "* BYE [UNAVAILABLE] Too many connections from your address, try again later."
    );
    assert!(over.line().is_none());
    let mut over = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    assert!(over.expect_line().starts_with("* BYE [UNAVAILABLE]"));
    assert!(over.line().is_none());
    // Another client address is not affected.
    let mut other = Raw::connect_from("127.0.0.2", proxy.port("imap-plain"), false, &peers.ca());
    assert!(other.expect_line().starts_with("* OK"));
    // The held connections still work.
    for (i, c) in held.iter_mut().enumerate() {
        c.send(&format!("n{i} NOOP\r\n"));
        assert!(c.expect_line().starts_with(&format!("n{i} OK")));
    }
    // Freeing one makes room again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
        if again.expect_line().starts_with("* OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.wait_log("limit=\"max-connections-per-ip\"");
}

#[test]
fn total_connections_over_the_limit_are_refused_from_any_address() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "max-connections = 2\n".into();
    let proxy = Proxy::start(&peers, &opts);
    // The start-up probes of Proxy::start may still hold places for a
    // moment: retry until each held connection is really admitted.
    let admitted = |from: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut r = Raw::connect_from(from, proxy.port("imap-plain"), false, &peers.ca());
            if r.expect_line().starts_with("* OK") {
                return r;
            }
            assert!(Instant::now() < deadline, "{from} was never admitted");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut a = admitted("127.0.0.1");
    let _b = admitted("127.0.0.3");
    let mut c = Raw::connect_from("127.0.0.4", proxy.port("imap-plain"), false, &peers.ca());
    assert_eq!(
        c.expect_line(),
        "* BYE [UNAVAILABLE] Too many connections, try again later."
    );
    a.send("x NOOP\r\n");
    assert!(a.expect_line().starts_with("x OK"));
}

/// One failed OAUTHBEARER login on a new connection from `source`; returns
/// how long the whole attempt took (the penalty before the token is
/// validated, then the failure reply's delay after the dummy response).
fn failed_login_delay(proxy: &Proxy, peers: &Peers, source: &str) -> Duration {
    let mut c = Raw::connect_from(source, proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    let t = Instant::now();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "bad-token")
    ));
    assert!(c.expect_line().starts_with("+ "));
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO [AUTHENTICATIONFAILED]"));
    t.elapsed()
}

#[test]
fn auth_failure_delay_grows_per_client_ip_across_connections() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.auth_failure_delay = "300ms";
    let proxy = Proxy::start(&peers, &opts);
    let src = "127.0.0.5";
    let d: Vec<Duration> = (0..3)
        .map(|_| failed_login_delay(&proxy, &peers, src))
        .collect();
    let ms = |d: Duration| d.as_millis();
    // The reply waits 300 ms; the n-th attempt first waits 300 ms * 2^(n-2)
    // for the address's earlier failures: 300, 300 + 300, 600 + 300.
    assert!(ms(d[0]) >= 280 && ms(d[0]) < 600, "{d:?}");
    assert!(ms(d[1]) >= 580 && ms(d[1]) < 900, "{d:?}");
    assert!(ms(d[2]) >= 880 && ms(d[2]) < 1400, "{d:?}");
    // Another address starts at the base delay.
    let other = failed_login_delay(&proxy, &peers, "127.0.0.6");
    assert!(ms(other) >= 280 && ms(other) < 600, "{other:?}");
    // A successful login clears the address's penalty.
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut ok = Raw::connect_from(src, proxy.port("imaps"), true, &peers.ca());
    ok.expect_line();
    assert!(login(&mut ok, "a", &token)
        .last()
        .unwrap()
        .starts_with("a OK"));
    let after = failed_login_delay(&proxy, &peers, src);
    assert!(ms(after) < 600, "{after:?}");
}

/// A TLS client in Python's ssl module: prints `ok <alpn>` or `error <why>`.
fn python_tls(port: u16, ca: &str, version: &str, alpn: &[&str]) -> String {
    let script = r#"
import socket, ssl, sys
port, ca, version, alpn = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
if version != "default":
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = v
    ctx.maximum_version = v
if alpn:
    ctx.set_alpn_protocols(alpn.split(","))
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            line = t.recv(200).decode(errors="replace").strip()
            print("ok", t.version(), t.selected_alpn_protocol(), line[:4])
except Exception as e:
    print("error", type(e).__name__, e)
"#;
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(ca)
        .arg(version)
        .arg(alpn.join(",")));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn tls_1_2_and_1_3_only_and_alpn_imap() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let port = proxy.port("imaps");
    let ca = peers.ca();
    let r = python_tls(port, &ca, "default", &[]);
    assert!(r.starts_with("ok TLSv1.3 None * OK"), "{r}");
    let r = python_tls(port, &ca, "TLSv1_2", &[]);
    assert!(r.starts_with("ok TLSv1.2 None * OK"), "{r}");
    let r = python_tls(port, &ca, "TLSv1_3", &["imap"]);
    assert!(r.starts_with("ok TLSv1.3 imap"), "{r}");
    let r = python_tls(port, &ca, "TLSv1_2", &["h2", "imap"]);
    assert!(r.starts_with("ok TLSv1.2 imap"), "{r}");
    // A client speaking another protocol (ALPACA) is refused.
    let r = python_tls(port, &ca, "default", &["http/1.1"]);
    assert!(r.starts_with("error"), "{r}");
    proxy.wait_log("peer doesn't support any known protocol");
    // TLS 1.1 and 1.0: the proxy refuses the handshake itself.
    for v in ["TLSv1_1", "TLSv1"] {
        let before = proxy.log().matches("TLS handshake failed").count();
        let r = python_tls(port, &ca, v, &[]);
        assert!(r.starts_with("error"), "{v}: {r}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.log().matches("TLS handshake failed").count() == before {
            assert!(
                Instant::now() < deadline,
                "{v}: the proxy never saw the handshake ({r}):\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // STARTTLS listeners offer the same.
    let mut c = Raw::connect(proxy.port("imap"), false, &ca);
    c.expect_line();
    c.send("s STARTTLS\r\n");
    assert!(c.expect_line().starts_with("s OK"));
}

/// SMTP on implicit TLS up to the EHLO reply.
fn smtp_ready(peers: &Peers, proxy: &Proxy) -> Raw {
    let mut raw = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert_eq!(raw.expect_line(), "220 proxy.test ESMTP");
    raw.send("EHLO raw.example\r\n");
    raw.until("250 ");
    raw
}

#[test]
fn smtp_limits_pre_auth_timeout_idle_timeout_and_connections_per_ip() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.pre_auth_timeout = "3s";
    opts.limits = "idle-timeout = \"2s\"\nmax-connections-per-ip = 3\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    // Logged in, then idle: 421 4.4.2 and close.
    let mut idle = smtp_ready(&peers, &proxy);
    idle.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, &token)));
    assert!(idle.expect_line().starts_with("235 "), "logged in");
    // Not logged in: the pre-auth timeout.
    let mut waiting = smtp_ready(&peers, &proxy);
    // A third connection fills the per-IP limit; the fourth gets 421 4.7.0.
    let mut third = Raw::connect(proxy.port("submission"), false, &peers.ca());
    third.expect_line();
    let mut over = Raw::connect(proxy.port("submission"), false, &peers.ca());
    assert_eq!(
        over.expect_line(),
        "421 4.7.0 proxy.test Too many connections from your address, try again later."
    );
    assert!(over.line().is_none());
    let mut over_tls = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert!(over_tls.expect_line().starts_with("421 4.7.0 "));
    third.send("NOOP\r\n");
    assert!(third.expect_line().starts_with("250"));
    assert_eq!(
        idle.expect_line(),
        "421 4.4.2 proxy.test Error: timeout exceeded"
    );
    assert!(idle.line().is_none());
    assert!(waiting.expect_line().starts_with("421 4.4.2 "));
    assert!(waiting.line().is_none());
}

#[test]
fn smtp_alpn_and_failure_penalty() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.auth_failure_delay = "300ms";
    opts.max_auth_failures = 5;
    let proxy = Proxy::start(&peers, &opts);
    let port = proxy.port("submissions");
    let r = python_tls(port, &peers.ca(), "default", &["smtp"]);
    assert!(r.starts_with("ok TLSv1.3 smtp 220"), "{r}");
    let r = python_tls(port, &peers.ca(), "default", &["imap"]);
    assert!(
        r.starts_with("error"),
        "an IMAP client is refused on SMTP: {r}"
    );
    // Failures from one address grow on SMTP too.
    let mut raw = smtp_ready(&peers, &proxy);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        raw.send(&format!("AUTH XOAUTH2 {}\r\n", xoauth2(ALICE, "bad-token")));
        assert!(raw.expect_line().starts_with("334 "));
        raw.send("AQ==\r\n");
        assert!(raw.expect_line().starts_with("535 5.7.8"));
        delays.push(t.elapsed().as_millis());
    }
    // Penalty before validation (0, 300, 600 ms) plus the reply's 300 ms.
    assert!(
        delays[0] >= 280 && delays[1] >= 580 && delays[2] >= 880,
        "{delays:?}"
    );
}

#[test]
fn behind_a_balancer_the_per_ip_limit_counts_the_proxy_header_address() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.limits = "max-connections-per-ip = 2\n".into();
    opts.listener_extra =
        "proxy-protocol = true\nproxy-trusted-networks = [\"127.0.0.1/32\"]\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let via_balancer = |client: &str| {
        let mut c = Raw::connect(proxy.port("imap-plain"), false, &peers.ca());
        c.send(&format!("PROXY TCP4 {client} 127.0.0.1 5000 143\r\n"));
        let first = c.expect_line();
        (c, first)
    };
    let (_a, first) = via_balancer("198.51.100.7");
    assert!(first.starts_with("* OK"), "{first}");
    let (_b, first) = via_balancer("198.51.100.7");
    assert!(first.starts_with("* OK"), "{first}");
    let (mut c, first) = via_balancer("198.51.100.7");
    assert!(
        first.starts_with("* BYE [UNAVAILABLE] Too many connections from your address"),
        "{first}"
    );
    assert!(c.line().is_none());
    // Another client behind the same balancer is not affected.
    let (_d, first) = via_balancer("198.51.100.8");
    assert!(first.starts_with("* OK"), "{first}");
    proxy.wait_log("client=198.51.100.7");
}
