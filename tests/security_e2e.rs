//! Security review findings (issue 11) end to end against the real peers:
//! the failure penalty cannot be dodged by hanging up after the error
//! challenge, a client that stops reading is closed at the pre-auth
//! deadline with its limit slot released, a session that ends with the
//! client hanging up after QUIT is logged as relayed with its bytes, and a
//! client that puts an IP address in SNI leaves no warning in the log.

mod common;
use common::*;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";

/// Sends a bad OAUTHBEARER token from `source`; returns how long the
/// verdict (the error challenge) took. With `hang_up` the connection is
/// dropped right after the challenge, else the dummy response is sent and
/// the failure reply read.
fn bad_attempt(proxy: &Proxy, peers: &Peers, source: &str, hang_up: bool) -> Duration {
    let mut c = Raw::connect_from(source, proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    let t = Instant::now();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "not-a-valid-token")
    ));
    let challenge = c.expect_line();
    let took = t.elapsed();
    assert!(challenge.starts_with("+ "), "{challenge}");
    if !hang_up {
        c.send("AQ==\r\n");
        let reply = c.expect_line();
        assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    }
    took
}

#[test]
fn hanging_up_after_the_error_challenge_is_penalised_like_a_full_failure() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    // The n-th recent failure makes the next attempt wait 5 ms * 2^(n-1).
    opts.auth_failure_delay = "5ms";
    let proxy = Proxy::start(&peers, &opts);
    let ten_then_one = |source: &'static str, hang_up: bool| {
        let proxy = &proxy;
        let peers = &*peers;
        move || {
            for _ in 0..10 {
                bad_attempt(proxy, peers, source, hang_up);
            }
            bad_attempt(proxy, peers, source, false)
        }
    };
    let (full, hung_up) = std::thread::scope(|s| {
        let a = s.spawn(ten_then_one("127.0.0.21", false));
        let b = s.spawn(ten_then_one("127.0.0.22", true));
        (a.join().expect("full"), b.join().expect("hang-ups"))
    });
    // After ten failures the eleventh token waits 5 ms * 2^9 = 2.56 s
    // before it is validated, however the ten ended.
    for (what, d) in [("full failures", full), ("hang-ups", hung_up)] {
        assert!(
            d >= Duration::from_millis(2500) && d < Duration::from_millis(4500),
            "after ten {what} the verdict took {d:?}"
        );
    }
    // A fresh address is not slowed.
    let fresh = bad_attempt(&proxy, &peers, "127.0.0.23", false);
    assert!(fresh < Duration::from_millis(1000), "{fresh:?}");
}

#[test]
fn a_client_that_stops_reading_is_closed_at_the_deadline_and_frees_its_slot() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.pre_auth_timeout = "3s";
    opts.limits = "max-connections-per-ip = 1\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let source = "127.0.0.24";
    let port = proxy.port("imap-plain");
    let started = Instant::now();
    let stalled = tcp_from_with(source, port, Some(4096));
    // Pipeline CAPABILITY without ever reading: the answers fill the
    // client's tiny receive window, then the proxy's send buffer.
    let writer = std::thread::spawn(move || {
        let mut s = stalled;
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let burst = "a CAPABILITY\r\n".repeat(1000);
        let mut sent = 0usize;
        // Bounded: at most 200 bursts (2.8 MB), or until writes block.
        for _ in 0..200 {
            match s.write_all(burst.as_bytes()) {
                Ok(()) => sent += burst.len(),
                Err(_) => break,
            }
        }
        (s, sent)
    });
    // While it holds its slot, the same address is refused.
    std::thread::sleep(Duration::from_millis(1000));
    let mut probe = Raw::connect_from(source, port, false, &peers.ca());
    let first = probe.expect_line();
    assert!(first.starts_with("* BYE [UNAVAILABLE]"), "{first}");
    // The slot comes free by the pre-auth deadline plus a second.
    let admitted = loop {
        let mut probe = Raw::connect_from(source, port, false, &peers.ca());
        if probe.expect_line().starts_with("* OK") {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stalled connection still holds its slot after {:?}:\n{}",
            started.elapsed(),
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(admitted < Duration::from_secs(4), "{admitted:?}");
    let (_stalled, sent) = writer.join().expect("writer");
    assert!(sent > 0);
    proxy.wait_log("result=\"timeout\"");
}

#[test]
fn quit_then_hang_up_is_logged_as_relayed_with_its_bytes() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "alice", SCOPE, 300);
    for _ in 0..3 {
        let mut c = Raw::connect(proxy.port("submissions"), true, &peers.ca());
        assert!(c.expect_line().starts_with("220 "));
        c.send("EHLO client.test\r\n");
        c.until("250 ");
        c.send(&format!(
            "AUTH OAUTHBEARER {}\r\n",
            oauthbearer(Some(ALICE), &token)
        ));
        assert!(c.expect_line().starts_with("235 "));
        // QUIT and go, without reading the 221.
        c.send("QUIT\r\n");
        drop(c);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = proxy.log();
        let ended = log
            .lines()
            .filter(|l| l.contains("connection closed") && l.contains("listener=submissions"))
            .count();
        if ended >= 3 {
            break log;
        }
        assert!(Instant::now() < deadline, "sessions never ended:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for line in log
        .lines()
        .filter(|l| l.contains("connection closed") && l.contains("listener=submissions"))
    {
        assert!(line.contains("result=\"relayed\""), "{line}");
        assert!(line.contains("bytes_in=6 "), "QUIT\\r\\n counted: {line}");
    }
    // The scenario happened: the last write failed as the client was gone.
    assert!(log.contains("the client hung up"), "{log}");
}

#[test]
fn an_ip_address_in_sni_leaves_no_warning_in_the_log() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.log_level = "info";
    let proxy = Proxy::start(&peers, &opts);
    for _ in 0..2 {
        let out = run(Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", proxy.port("imaps")))
            .args(["-servername", "127.0.0.1", "-CAfile"])
            .arg(peers.ca())
            .stdin(std::process::Stdio::null()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("* OK"), "no greeting: {stdout}");
    }
    let log = proxy.wait_log("connection closed");
    std::thread::sleep(Duration::from_millis(200));
    let log = proxy.log() + &log;
    assert!(!log.contains("SNI"), "{log}");
    assert!(!log.contains("rustls"), "{log}");
}
