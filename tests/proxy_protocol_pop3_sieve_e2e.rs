//! A PROXY protocol v2 header in front of the POP3 and ManageSieve
//! listeners (`proxy-protocol = true`): the test sends the header itself,
//! naming a client address (127.0.0.44, 127.0.0.45) other than the one it
//! connects from (127.0.0.1), then logs in over implicit TLS with a token.
//! The proxy logs the header's address, and passes it to Dovecot with
//! `XCLIENT ADDR=`, whose log shows it as `rip=`. The IMAP and SMTP
//! versions, with HAProxy in front: tests/proxy_protocol_e2e.rs.

mod common;
mod managesieve_support;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SCOPE: &str = "openid email profile";
const ALICE: &str = "alice@example.com";

/// A PROXY v2 header: TCP over IPv4 from `client`:`port` to 127.0.0.1:`to`.
fn proxy_v2(client: [u8; 4], port: u16, to: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&to.to_be_bytes());
    h
}

/// The extra listeners "pop3s-lb" and "sieve-tls-lb", behind a balancer on
/// 127.0.0.1, in front of the usual POP3 and ManageSieve upstreams.
fn start(peers: &Peers) -> (Proxy, u16, u16) {
    let (pop3, sieve) = (free_port(), free_port());
    let listener = |name: &str, protocol: &str, port: u16, upstream: &str| {
        format!(
            "[listener.{name}]\nprotocol = \"{protocol}\"\nbind = \"127.0.0.1:{port}\"\ntls = \"implicit\"\ndirectory = \"test\"\nupstream = \"{upstream}\"\nproxy-protocol = true\nproxy-trusted-networks = [\"127.0.0.1/32\"]\n\n"
        )
    };
    let mut opts = ProxyOptions::new(peers);
    opts.extra = listener("pop3s-lb", "pop3", pop3, "dovecot-pop3")
        + &listener("sieve-tls-lb", "managesieve", sieve, "dovecot-sieve");
    (Proxy::start(peers, &opts), pop3, sieve)
}

/// A TLS session on `port` after the PROXY v2 header naming `client`.
fn behind_balancer(peers: &Peers, port: u16, client: [u8; 4], client_port: u16) -> Raw {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.write_all(&proxy_v2(client, client_port, port))
        .expect("header");
    Raw::over(tcp, true, &peers.ca())
}

/// Waits (bounded) for a line of Dovecot's log with every one of `needles`.
fn wait_dovecot_log(peers: &Peers, needles: &[&str]) {
    let path = peers.str(&["dovecot", "log"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Dovecot never logged a line with {needles:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pop3_behind_a_proxy_v2_header_uses_the_address_it_names() {
    let peers = peers_read();
    let (proxy, pop3, _) = start(&peers);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = behind_balancer(&peers, pop3, [127, 0, 0, 44], 40044);
    assert_eq!(c.expect_line(), "+OK proxy.test ready.");
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), &token)
    ));
    assert_eq!(c.expect_line(), "+OK Logged in.", "{}", proxy.log());
    c.send("STAT\r\n");
    assert!(c.expect_line().starts_with("+OK 1 "));
    c.send("QUIT\r\n");
    assert!(c.expect_line().starts_with("+OK"));
    // The proxy's connection log line names the header's client...
    proxy.wait_log("listener=pop3s-lb client=127.0.0.44:40044");
    // ...and Dovecot got it with XCLIENT.
    wait_dovecot_log(
        &peers,
        &[
            "pop3-login",
            "Login: user=<alice@example.com>",
            "rip=127.0.0.44,",
        ],
    );
}

#[test]
fn managesieve_behind_a_proxy_v2_header_uses_the_address_it_names() {
    let peers = peers_read();
    let (proxy, _, sieve) = start(&peers);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = behind_balancer(&peers, sieve, [127, 0, 0, 45], 40045);
    let greeting = c.until("OK");
    assert!(
        greeting.contains(&"\"SASL\" \"OAUTHBEARER XOAUTH2\"".to_string()),
        "{greeting:?}"
    );
    managesieve_support::login(&mut c, "OAUTHBEARER", &oauthbearer(None, &token), false);
    c.send("LISTSCRIPTS\r\n");
    assert!(c.until("OK").last().is_some_and(|l| l.starts_with("OK")));
    c.send("LOGOUT\r\n");
    assert!(c.expect_line().starts_with("OK"));
    proxy.wait_log("listener=sieve-tls-lb client=127.0.0.45:40045");
    managesieve_support::wait_login_logged(&peers, "rip=127.0.0.45,");
}

#[test]
fn a_header_from_outside_the_trusted_networks_is_refused() {
    let peers = peers_read();
    let (proxy, pop3, sieve) = start(&peers);
    for port in [pop3, sieve] {
        // From 127.0.0.2: not the balancer, so no greeting, only a close.
        let mut tcp = tcp_from("127.0.0.2", port);
        tcp.write_all(&proxy_v2([127, 0, 0, 46], 40046, port))
            .expect("header");
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut tcp, &mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{:?}", &buf[..n]);
    }
    proxy.wait_log("connection from an untrusted address refused");
    assert!(!proxy.log().contains("client=127.0.0.46"));
}
