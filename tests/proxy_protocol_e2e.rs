//! The client's real address, end to end: HAProxy (Debian's, started here
//! on loopback with its own configuration) in front of the proxy with
//! `send-proxy-v2` / `send-proxy`, the proxy reading that header on a
//! `proxy-protocol = true` listener, and PROXY v2 from the proxy to Dovecot
//! (`haproxy = yes` listener) and Postfix (`smtpd_upstream_proxy_protocol`).
//! Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3) so
//! the real address differs from the proxy's own; the tests read it back
//! from Dovecot's log (`rip=`) and Postfix's (`client=...[addr]`).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCOPE: &str = "openid email profile";

/// HAProxy in TCP mode: each frontend port forwards to `target` with the
/// given `server` options (`send-proxy-v2`, `send-proxy`). Stopped by PID.
struct Haproxy {
    child: Child,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(target: u16, modes: &[&str]) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = String::from(
            "global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n",
        );
        let ports: Vec<u16> = modes.iter().map(|_| free_port()).collect();
        for (i, (mode, port)) in modes.iter().zip(&ports).enumerate() {
            cfg.push_str(&format!(
                "frontend f{i}\n    bind 127.0.0.1:{port}\n    default_backend b{i}\n\nbackend b{i}\n    server proxy 127.0.0.1:{target} {mode}\n\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start haproxy (install it with scripts/install-deps.sh)");
        let mut h = Haproxy { child, ports, dir };
        h.wait_listening();
        h
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in &self.ports {
            // A probe that only opens a socket would reach the proxy as a
            // connection; wait for the bind through the kernel's table instead.
            while !listening(*port) {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("haproxy exited ({status}): {}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen: {}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp).
fn listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == wanted && f[3] == "0A"
        })
}

fn wait_file_contains(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had a line with {needles:?}:\n{}",
            path.display(),
            text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listening(port) {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A listener behind a load balancer, and upstreams that get PROXY v2.
fn lb_config(peers: &Peers, imap_lb: u16, smtp_lb: u16, plain_lb: u16, untrusted: u16) -> String {
    let listener = |name: &str, proto: &str, port: u16, tls: &str, up: &str, trusted: &str| {
        format!(
            "[listener.{name}]\nprotocol = \"{proto}\"\nbind = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\ndirectory = \"test\"\nupstream = \"{up}\"\nproxy-protocol = true\nproxy-trusted-networks = [\"{trusted}\"]\n\n"
        )
    };
    let upstream = |name: &str, port: u16| {
        format!(
            "[upstream.{name}]\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"%{{file:{}}}%\"\nidentity = \"email\"\nconnect-timeout = \"5s\"\nproxy-protocol = \"v2\"\n\n",
            peers.str(&["dovecot", "master_user"]),
            peers.str(&["dovecot", "master_secret_file"]),
        )
    };
    [
        listener(
            "imaps-lb",
            "imap",
            imap_lb,
            "implicit",
            "dovecot-pp",
            "127.0.0.1/32",
        ),
        listener(
            "submissions-lb",
            "smtp",
            smtp_lb,
            "implicit",
            "postfix-pp",
            "127.0.0.1/32",
        ),
        listener(
            "imap-lb-plain",
            "imap",
            plain_lb,
            "none",
            "dovecot-pp",
            "127.0.0.1/32",
        ),
        listener(
            "imap-lb-untrusted",
            "imap",
            untrusted,
            "none",
            "dovecot-pp",
            "127.0.0.9/32",
        ),
        upstream("dovecot-pp", peers.port(&["dovecot", "imap_haproxy_port"])),
        upstream("postfix-pp", peers.port(&["postfix", "smtp_haproxy_port"])),
    ]
    .concat()
}

struct Setup {
    proxy: Proxy,
    imap_lb: u16,
    smtp_lb: u16,
    plain_lb: u16,
    untrusted: u16,
}

fn start(peers: &Peers) -> Setup {
    let (imap_lb, smtp_lb, plain_lb, untrusted) =
        (free_port(), free_port(), free_port(), free_port());
    let mut opts = ProxyOptions::new(peers);
    opts.extra = lb_config(peers, imap_lb, smtp_lb, plain_lb, untrusted);
    let proxy = Proxy::start(peers, &opts);
    for p in [imap_lb, smtp_lb, plain_lb, untrusted] {
        wait_port(p);
    }
    Setup {
        proxy,
        imap_lb,
        smtp_lb,
        plain_lb,
        untrusted,
    }
}

fn curl_imap_from(source: &str, port: u16, peers: &Peers, token: &str) -> std::process::Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--interface", source])
        .args(["--cacert", &peers.ca(), "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!(
            "imaps://localhost:{port}/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%20(SUBJECT)"
        ))
        .args(["-u", "alice@example.com:", "--oauth2-bearer", token]))
}

#[test]
fn haproxy_in_front_and_proxy_v2_to_dovecot_carry_the_client_address() {
    let peers = peers_read();
    let s = start(&peers);
    let haproxy = Haproxy::start(s.imap_lb, &["send-proxy-v2", "send-proxy"]);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    for (source, port) in [
        ("127.0.0.2", haproxy.ports[0]),
        ("127.0.0.3", haproxy.ports[1]),
    ] {
        let out = curl_imap_from(source, port, &peers, &token);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Welcome"),
            "via HAProxy from {source}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.proxy.log(),
            haproxy.log()
        );
        // The proxy logs the real client, not HAProxy's address...
        s.proxy
            .wait_log(&format!("listener=imaps-lb client={source}:"));
        // ...and Dovecot, reached over its `haproxy = yes` listener, too.
        wait_file_contains(
            Path::new(&peers.str(&["dovecot", "log"])),
            &["Login: user=<alice@example.com>", &format!("rip={source},")],
        );
    }
}

#[test]
fn haproxy_in_front_of_smtp_and_proxy_v2_to_postfix_carry_the_client_address() {
    let peers = peers_read();
    let s = start(&peers);
    let haproxy = Haproxy::start(s.smtp_lb, &["send-proxy-v2"]);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let message = s.proxy.dir.path().join("message.eml");
    std::fs::write(
        &message,
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: via haproxy\r\n\r\nhello\r\n",
    )
    .unwrap();
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "--interface", "127.0.0.2"])
        .arg(format!(
            "smtps://127.0.0.1:{}/curl.example",
            haproxy.ports[0]
        ))
        .args(["--mail-from", "alice@example.com"])
        .args(["--mail-rcpt", "bob@example.com"])
        .arg("--upload-file")
        .arg(&message)
        .args(["--oauth2-bearer", &token])
        .args(["-u", "alice@example.com:", "--cacert", &peers.ca()]));
    assert!(
        out.status.success(),
        "curl via HAProxy: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.proxy.log(),
        haproxy.log()
    );
    s.proxy
        .wait_log("listener=submissions-lb client=127.0.0.2:");
    // Postfix's smtpd (smtpd_upstream_proxy_protocol = haproxy) saw the
    // client's address in the proxy's v2 header.
    wait_file_contains(
        Path::new(&peers.str(&["postfix", "maillog"])),
        &["client=", "[127.0.0.2]", "sasl_username=alice@example.com"],
    );
}

#[test]
fn a_header_the_proxy_reads_itself_and_refusals() {
    let peers = peers_read();
    let s = start(&peers);
    let connect = |port: u16| {
        let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c
    };
    // A v1 header naming 127.0.0.7: the greeting follows and the proxy
    // logs that address.
    let mut c = connect(s.plain_lb);
    c.write_all(b"PROXY TCP4 127.0.0.7 127.0.0.1 5555 143\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"* OK"), "{:?}", &buf[..n]);
    c.write_all(b"a LOGOUT\r\n").unwrap();
    drop(c);
    s.proxy
        .wait_log("listener=imap-lb-plain client=127.0.0.7:5555");

    // No header: closed without a greeting.
    let mut c = connect(s.plain_lb);
    c.write_all(b"a1 LOGIN alice@example.com secret\r\n")
        .unwrap();
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    s.proxy.wait_log("no PROXY protocol header");

    // A sender outside proxy-trusted-networks: closed, even with a header.
    let mut c = connect(s.untrusted);
    c.write_all(b"PROXY TCP4 127.0.0.7 127.0.0.1 5555 143\r\n")
        .unwrap();
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    s.proxy
        .wait_log("connection from an untrusted address refused");
    assert!(!s
        .proxy
        .log()
        .contains("listener=imap-lb-untrusted client=127.0.0.7"));
}
