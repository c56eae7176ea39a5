//! The upstream ManageSieve login against scripted fake servers (the real
//! Dovecot is exercised in `tests/managesieve_e2e.rs`).

use super::*;
use crate::config::{IdentityField, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const GREETING: &[u8] = b"\"IMPLEMENTATION\" \"Fake Pigeonhole\"\r\n\"SIEVE\" {17}\r\nfileinto vacation\r\n\"NOTIFY\" \"mailto\"\r\n\"SASL\" \"PLAIN\"\r\n\"XCLIENT\"\r\n\"VERSION\" \"1.0\"\r\nOK \"ready\"\r\n";

fn client() -> ClientInfo {
    ClientInfo {
        peer: "[::ffff:192.0.2.7]:4321".parse().unwrap(),
        local: "127.0.0.1:4190".parse().unwrap(),
    }
}

fn target(address: String) -> Arc<Target> {
    Target::new(Upstream {
        name: format!("fake-{address}"),
        protocol: None,
        identity_case: Default::default(),
        backends: crate::config::Backends::single("fake", &address),
        address,
        tls: TlsMode::None,
        tls_ca: None,
        tls_name: "localhost".into(),
        login: UpstreamLogin::MasterUser {
            username: "proxy".into(),
            secret: Secret::new("s3cret"),
        },
        identity: IdentityField::Email,
        connect_timeout: Duration::from_secs(5),
        proxy_protocol_v2: false,
    })
    .unwrap()
}

/// A fake upstream: greets, reads until it has `expect_lines` lines, then
/// answers `answer` and keeps the connection open briefly. Returns its
/// address, what it received, and its connection count.
async fn fake(
    answer: &'static [u8],
    expect_lines: usize,
) -> (String, Arc<std::sync::Mutex<Vec<u8>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let (rx, counter) = (received.clone(), count.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let rx = rx.clone();
            tokio::spawn(async move {
                tcp.write_all(GREETING).await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while got.iter().filter(|&&b| b == b'\n').count() < expect_lines {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                rx.lock().unwrap().extend_from_slice(&got);
                let _ = tcp.write_all(answer).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    (address, received, count)
}

fn plain(user: &str) -> String {
    crate::sasl::encode(format!("{user}\0proxy\0s3cret").as_bytes())
}

#[tokio::test]
async fn master_login_sends_xclient_and_plain_in_one_write() {
    let (address, received, _) = fake(
        b"OK \"Updated\"\r\nOK \"Logged in.\"\r\n\"pipelined\"\r\n",
        2,
    )
    .await;
    let t = target(address);
    let logged_in = master_login(&t, client(), "alice@example.com")
        .await
        .unwrap();
    assert_eq!(logged_in.reply, vec![b"OK \"Logged in.\"".to_vec()]);
    assert_eq!(
        String::from_utf8(received.lock().unwrap().clone()).unwrap(),
        format!(
            "XCLIENT ADDR=192.0.2.7 PORT=4321\r\nAUTHENTICATE \"PLAIN\" \"{}\"\r\n",
            plain("alice@example.com")
        )
    );
    // Bytes past the login answer are handed to the relay.
    let mut rest = logged_in.buffered;
    if rest.is_empty() {
        let mut stream = logged_in.stream;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        rest = buf[..n].to_vec();
    }
    assert_eq!(rest, b"\"pipelined\"\r\n");
}

#[tokio::test]
async fn refusals_are_classified_by_whose_credentials() {
    use crate::upstream::Refusal;
    let cases: &[(&'static [u8], Option<Refusal>)] = &[
        // Past the master secret, the user is not accepted.
        (
            b"OK \"Updated\"\r\nNO \"Authorization failed\"\r\n",
            Some(Refusal::User),
        ),
        // Ambiguous; the probe (this fake answers it the same) says the
        // master secret is wrong: the proxy's own.
        (
            b"OK \"Updated\"\r\nNO \"Authentication failed.\"\r\n",
            Some(Refusal::Proxy),
        ),
        // NO (TRYLATER), or any other NO: the upstream's own trouble.
        (
            b"OK \"Updated\"\r\nNO (TRYLATER) \"Try later\"\r\n",
            Some(Refusal::Upstream),
        ),
        // An untrusted proxy's XCLIENT is refused; the login goes on.
        (
            b"NO \"Not trusted\"\r\nNO {7}\r\nrefused\r\n",
            Some(Refusal::Upstream),
        ),
        // BYE, a challenge or a hang-up: protocol errors (temporary).
        (b"OK \"Updated\"\r\nBYE \"Shutting down\"\r\n", None),
        (b"OK \"Updated\"\r\n\"\"\r\n", None),
        (b"OK \"Updated\"\r\n", None),
    ];
    for (answer, expected) in cases {
        let (address, _, _) = fake(answer, 2).await;
        let result = master_login(&target(address), client(), "bob@example.com").await;
        let what = String::from_utf8_lossy(answer);
        match (result, expected) {
            (Err(Error::Refused { by, .. }), Some(expected)) => assert_eq!(by, *expected, "{what}"),
            (Err(Error::Protocol(_)), None) => {}
            (Err(e), _) => panic!("{what}: {e}"),
            (Ok(_), _) => panic!("{what}: logged in"),
        }
    }
}

#[tokio::test]
async fn an_ambiguous_refusal_with_a_working_master_secret_is_the_users() {
    // The login is refused as "Authentication failed." (a name Dovecot does
    // not allow), the probe for a plain name gets past the secret.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        for answer in [
            &b"NO \"Authentication failed.\"\r\n"[..],
            b"NO \"Authorization failed\"\r\n",
        ] {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.write_all(GREETING).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while buf[..got].iter().filter(|&&b| b == b'\n').count() < 2 {
                got += tcp.read(&mut buf[got..]).await.unwrap();
            }
            tcp.write_all(b"OK \"Updated\"\r\n").await.unwrap();
            tcp.write_all(answer).await.unwrap();
        }
    });
    let t = target(address);
    let result = master_login(&t, client(), "bad name@example.com").await;
    assert!(matches!(
        result,
        Err(Error::Refused {
            by: crate::upstream::Refusal::User,
            ..
        })
    ));
    assert_eq!(t.master_proof.recent(), Some(true));
}

#[tokio::test]
async fn over_long_literal_is_refused() {
    let (address, _, _) = fake(b"OK \"Updated\"\r\nNO {999999}\r\nxx", 2).await;
    let result = master_login(&target(address), client(), "a@example.com").await;
    assert!(matches!(result, Err(Error::Protocol(m)) if m.contains("over-long")));
}

#[tokio::test]
async fn password_passthrough_returns_the_answer() {
    let (address, received, _) =
        fake(b"OK \"Updated\"\r\nNO \"Authentication failed.\"\r\n", 2).await;
    let password = Password {
        authzid: b"",
        user: b"alice",
        password: b"wrong",
    };
    match password_login(&target(address), client(), password).await {
        Ok(PasswordReply::Refused { lines, temporary }) => {
            assert_eq!(lines, vec![b"NO \"Authentication failed.\"".to_vec()]);
            assert!(!temporary);
        }
        _ => panic!("expected NO"),
    }
    let got = received.lock().unwrap().clone();
    let plain = crate::sasl::encode(b"\0alice\0wrong");
    assert!(got.ends_with(format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n").as_bytes()));
}

#[tokio::test]
async fn capabilities_are_learned_once_and_filtered() {
    let (address, _, connections) = fake(b"OK \"Logout completed.\"\r\n", 1).await;
    let t = target(address);
    let (a, b) = tokio::join!(learned_capabilities(&t), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        learned_capabilities(&t).await
    });
    let expected = vec![
        ("SIEVE".to_string(), Some(b"fileinto vacation".to_vec())),
        ("NOTIFY".to_string(), Some(b"mailto".to_vec())),
    ];
    assert_eq!(*a, expected);
    assert_eq!(*b, expected);
    assert_eq!(*capabilities(&t), expected);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_upstream_gets_the_default_sieve_list() {
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let t = target(address);
    let caps = learned_capabilities(&t).await;
    assert_eq!(caps.len(), 1);
    assert_eq!(caps[0].0, "SIEVE");
    assert_eq!(caps[0].1.as_deref(), Some(DEFAULT_SIEVE.as_bytes()));
}

#[test]
fn xclient_addresses() {
    let info = |peer: &str| ClientInfo {
        peer: peer.parse().unwrap(),
        local: "127.0.0.1:4190".parse().unwrap(),
    };
    assert_eq!(
        xclient_command(info("192.0.2.7:1")),
        "XCLIENT ADDR=192.0.2.7 PORT=1"
    );
    assert_eq!(
        xclient_command(info("[2001:db8::1]:2")),
        "XCLIENT ADDR=2001:db8::1 PORT=2"
    );
    assert_eq!(
        xclient_command(info("[::ffff:192.0.2.7]:3")),
        "XCLIENT ADDR=192.0.2.7 PORT=3"
    );
}

#[tokio::test]
async fn a_first_client_waits_for_the_learning_already_under_way() {
    let (address, _, connections) = fake(b"OK \"Logout completed.\"\r\n", 1).await;
    let t = target(address);
    // A first-flight greeting (implicit TLS) finds nothing known, so it is
    // not sent then, and starts the learning in the background...
    assert!(known_capabilities(&t).is_none());
    // ...and the client, greeted after the handshake, gets what it learned.
    let learned = learned_capabilities(&t).await;
    assert_eq!(learned[1].0, "NOTIFY");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
