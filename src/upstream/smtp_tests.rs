//! Tests of `smtp`.
use super::*;
use crate::config::{IdentityField, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn client(peer: &str) -> ClientInfo {
    ClientInfo {
        peer: peer.parse().unwrap(),
        local: "127.0.0.1:587".parse().unwrap(),
    }
}

#[test]
fn xclient_commands() {
    assert_eq!(
        xclient_command(
            client("192.0.2.7:4321"),
            "mua.example",
            Some("a+b@example.com")
        ),
        "XCLIENT LOGIN=a+2Bb@example.com ADDR=192.0.2.7 PORT=4321 HELO=mua.example PROTO=ESMTP"
    );
    assert_eq!(
        xclient_command(client("[2001:db8::1]:25"), "[IPv6:2001:db8::1]", None),
        "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25 HELO=[IPv6:2001:db8::1] PROTO=ESMTP"
    );
    assert_eq!(
        xclient_command(client("[::ffff:192.0.2.7]:25"), "h", None),
        "XCLIENT ADDR=192.0.2.7 PORT=25 HELO=h PROTO=ESMTP"
    );
}

fn target(address: String) -> Arc<Target> {
    Target::new(Upstream {
        protocol: None,
        name: "fake".into(),
        backends: crate::config::Backends::single("fake", &address),
        address,
        tls: TlsMode::None,
        tls_ca: None,
        tls_name: "localhost".into(),
        login: UpstreamLogin::Xclient,
        identity: IdentityField::Email,
        identity_case: Default::default(),
        connect_timeout: Duration::from_secs(5),
        proxy_protocol_v2: false,
    })
    .unwrap()
}

/// A fake upstream that greets, answers EHLO with `keywords` and counts
/// its connections.
async fn fake_upstream(keywords: &'static [&'static str]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = if line.starts_with("EHLO") {
                        let mut out = String::from("250-fake\r\n");
                        for (i, k) in keywords.iter().enumerate() {
                            let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
                            out.push_str(&format!("250{sep}{k}\r\n"));
                        }
                        out
                    } else {
                        "221 bye\r\n".into()
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, count)
}

#[tokio::test]
async fn extensions_are_learned_once_and_shared() {
    let (address, connections) = fake_upstream(&["PIPELINING", "XCLIENT ADDR", "SIZE 100"]).await;
    let t = target(address);
    let (a, b, c) = tokio::join!(
        extensions(&t, "proxy.test"),
        extensions(&t, "proxy.test"),
        extensions(&t, "proxy.test")
    );
    let expected = vec![
        "PIPELINING".to_string(),
        "XCLIENT ADDR".into(),
        "SIZE 100".into(),
    ];
    for list in [a, b, c] {
        assert_eq!(*list, expected);
    }
    assert_eq!(extensions(&t, "proxy.test").await.len(), 3);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stale_extensions_are_served_while_refreshing() {
    let (address, connections) = fake_upstream(&["CHUNKING"]).await;
    let t = target(address);
    assert_eq!(*extensions(&t, "p").await, vec!["CHUNKING".to_string()]);
    // Make the cached list stale: the next caller gets it at once and a
    // background refresh connects again.
    t.smtp_extensions.state.lock().unwrap().next_refresh = Some(Instant::now());
    assert_eq!(*extensions(&t, "p").await, vec!["CHUNKING".to_string()]);
    for _ in 0..200 {
        if connections.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unreachable_upstream_gets_the_defaults_without_retrying_per_client() {
    // A port nobody listens on.
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let t = target(address);
    let defaults: Vec<String> = DEFAULT_EXTENSIONS.iter().map(|k| k.to_string()).collect();
    assert_eq!(*extensions(&t, "p").await, defaults);
    let next = t.smtp_extensions.state.lock().unwrap().next_refresh;
    assert_eq!(*extensions(&t, "p").await, defaults);
    // The second caller did not try again: the retry time is unchanged.
    assert_eq!(t.smtp_extensions.state.lock().unwrap().next_refresh, next);
}

#[test]
fn xtext_encoding() {
    assert_eq!(xtext("alice@example.com"), "alice@example.com");
    assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    assert_eq!(xtext("é"), "+C3+A9");
}

#[test]
fn reply_lines() {
    assert_eq!(
        parse_reply_line(b"250-PIPELINING"),
        Some((250, true, "PIPELINING".into()))
    );
    assert_eq!(parse_reply_line(b"250 OK"), Some((250, false, "OK".into())));
    assert_eq!(parse_reply_line(b"220"), Some((220, false, String::new())));
    assert_eq!(parse_reply_line(b"25"), None);
    assert_eq!(parse_reply_line(b"abc def"), None);
    assert_eq!(parse_reply_line(b"250x"), None);
}
