//! Tests of the POP3 upstream login: response codes, XCLIENT, and
//! transcripts against a fake upstream on 127.0.0.1:0.

use super::*;

#[test]
fn xclient_offer_is_read_from_the_greeting() {
    assert!(offers_xclient(b"+OK [XCLIENT] Dovecot (Debian) ready."));
    assert!(offers_xclient(b"+OK [xclient] ready"));
    assert!(!offers_xclient(b"+OK Dovecot (Debian) ready."));
    assert!(!offers_xclient(b"+OK XCLIENT ready"));
    assert!(!offers_xclient(b"+OK [XCLIENT"));
}

#[test]
fn refusals_are_classified_by_response_code() {
    use super::super::Refusal::{Upstream, User};
    let cases: &[(&[u8], bool, Option<Refusal>)] = &[
        // (line, temporary for a password, whose refusal for a master login)
        (b"-ERR [AUTH] Authentication failed.", false, None),
        (b"-ERR [AUTH] Authorization failed", false, Some(User)),
        (
            b"-ERR [SYS/TEMP] Temporary authentication failure.",
            true,
            Some(Upstream),
        ),
        (b"-ERR [SYS/TEMP/DISK] full", true, Some(Upstream)),
        (b"-ERR [IN-USE] Mailbox locked", true, Some(Upstream)),
        (
            b"-ERR [SYS/PERM] Authorization failed",
            false,
            Some(Upstream),
        ),
        (b"-ERR Unknown command.", false, Some(Upstream)),
        (b"-ERR [SYS/TEMPX] no", false, Some(Upstream)),
    ];
    for &(line, temporary, by) in cases {
        let text = String::from_utf8_lossy(line);
        assert_eq!(is_temporary(line), temporary, "{text}");
        assert_eq!(refusal(line), by, "{text}");
    }
}

/// Dovecot's ambiguous `Authentication failed.`: a probe login as
/// PROBE_USER tells a refused name (the user's) from a wrong master
/// secret (the proxy's), and its verdict is remembered.
#[tokio::test]
async fn an_ambiguous_refusal_is_settled_by_a_probe() {
    for (probe_answer, expected) in [
        ("-ERR [AUTH] Authorization failed\r\n", Refusal::User),
        ("-ERR [AUTH] Authentication failed.\r\n", Refusal::Proxy),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = target(listener.local_addr().unwrap().to_string());
        let fake = tokio::spawn(async move {
            // The login, then the probe: two connections.
            for (i, answer) in ["-ERR [AUTH] Authentication failed.\r\n", probe_answer]
                .into_iter()
                .enumerate()
            {
                let (mut tcp, _) = listener.accept().await.unwrap();
                tcp.write_all(b"+OK ready.\r\n").await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                    .await
                    .unwrap();
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                tcp.write_all(answer.as_bytes()).await.unwrap();
                if i == 1 {
                    let plain = sasl::encode(b"oauthbearerproxyprobe\0proxy\0s3cret");
                    assert_eq!(line, format!("AUTH PLAIN {plain}\r\n"));
                }
            }
        });
        match master_login(&t, client(), "alice+tag@example.com").await {
            Err(Error::Refused { by, .. }) => assert_eq!(by, expected),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("logged in"),
        }
        fake.await.unwrap();
        assert_eq!(t.master_proof.recent(), Some(expected == Refusal::User));
    }
}

#[test]
fn xclient_command_carries_the_client_address() {
    let client = ClientInfo {
        peer: "[2001:db8::7]:4242".parse().unwrap(),
        local: "127.0.0.1:995".parse().unwrap(),
    };
    assert_eq!(
        xclient_command(client),
        "XCLIENT ADDR=2001:db8::7 PORT=4242"
    );
    let mapped = ClientInfo {
        peer: "[::ffff:192.0.2.7]:110".parse().unwrap(),
        ..client
    };
    assert_eq!(xclient_command(mapped), "XCLIENT ADDR=192.0.2.7 PORT=110");
}

fn target(address: String) -> std::sync::Arc<Target> {
    use crate::config::{IdentityField, Upstream};
    Target::new(Upstream {
        name: "fake".into(),
        protocol: Some(crate::config::Protocol::Pop3),
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
        identity_case: Default::default(),
        connect_timeout: std::time::Duration::from_secs(5),
        proxy_protocol_v2: false,
    })
    .unwrap()
}

/// A fake POP3 upstream for one connection: sends `greeting`, then
/// answers each line with `answer(line)`; returns what it was sent.
async fn fake(
    greeting: &'static str,
    answer: fn(&str) -> &'static str,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (r, mut w) = tcp.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(greeting.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = answer(&line);
            seen.push(line);
            if w.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        seen
    });
    (address, task)
}

fn client() -> ClientInfo {
    ClientInfo {
        peer: "192.0.2.7:4242".parse().unwrap(),
        local: "127.0.0.1:995".parse().unwrap(),
    }
}

#[tokio::test]
async fn master_login_passes_the_address_then_authenticates_with_authzid() {
    let (address, seen) = fake("+OK [XCLIENT] ready.\r\n", |line| {
        if line.starts_with("XCLIENT") {
            "+OK Updated\r\n"
        } else {
            "+OK Logged in.\r\n"
        }
    })
    .await;
    let t = target(address);
    let logged_in = master_login(&t, client(), "alice@example.com")
        .await
        .unwrap();
    assert_eq!(logged_in.reply, vec![b"+OK Logged in.".to_vec()]);
    drop(logged_in);
    let plain = sasl::encode(b"alice@example.com\0proxy\0s3cret");
    assert_eq!(
        seen.await.unwrap(),
        vec![
            "XCLIENT ADDR=192.0.2.7 PORT=4242".to_string(),
            format!("AUTH PLAIN {plain}")
        ]
    );
}

#[tokio::test]
async fn no_xclient_unless_offered_and_refusals_are_classified() {
    let (address, seen) = fake("+OK ready.\r\n", |_| "-ERR [AUTH] Authorization failed\r\n").await;
    let t = target(address);
    match master_login(&t, client(), "nobody@example.com").await {
        Err(Error::Refused {
            by: Refusal::User,
            reply,
        }) => assert_eq!(reply, "-ERR [AUTH] Authorization failed"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("logged in"),
    }
    let seen = seen.await.unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with("AUTH PLAIN "));
}

#[tokio::test]
async fn password_refusals_carry_the_upstream_line() {
    let (address, _seen) = fake("+OK ready.\r\n", |_| {
        "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
    })
    .await;
    let t = target(address);
    let password = Password {
        authzid: b"",
        user: b"alice@example.com",
        password: b"pw",
    };
    match password_login(&t, client(), password).await {
        Ok(PasswordReply::Refused { lines, temporary }) => {
            assert!(temporary);
            assert_eq!(
                lines,
                vec![b"-ERR [SYS/TEMP] Temporary authentication failure.".to_vec()]
            );
        }
        _ => panic!("expected a refusal"),
    }
}

#[tokio::test]
async fn a_bad_greeting_is_a_protocol_error() {
    let (address, _seen) = fake("-ERR [SYS/TEMP] busy\r\n", |_| "").await;
    let t = target(address);
    assert!(matches!(
        master_login(&t, client(), "alice@example.com").await,
        Err(Error::Protocol(_))
    ));
}

#[tokio::test]
async fn auth_waits_for_the_xclient_answer() {
    // Pipelined, Dovecot's two answers cost a delayed ACK (40 ms): the
    // AUTH line must not arrive before XCLIENT was answered.
    use tokio::io::{AsyncBufReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (r, mut w) = tcp.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"+OK [XCLIENT] ready.\r\n").await.unwrap();
        let mut xclient = String::new();
        r.read_line(&mut xclient).await.unwrap();
        // Nothing more until XCLIENT is answered.
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), r.fill_buf()).await;
        let pipelined = matches!(early, Ok(Ok(b)) if !b.is_empty());
        w.write_all(b"+OK Updated\r\n").await.unwrap();
        let mut auth = String::new();
        r.read_line(&mut auth).await.unwrap();
        w.write_all(b"+OK Logged in.\r\n").await.unwrap();
        (xclient, pipelined, auth)
    });
    let t = target(address);
    let logged_in = master_login(&t, client(), "alice@example.com")
        .await
        .unwrap();
    drop(logged_in);
    let (xclient, pipelined, auth) = server.await.unwrap();
    assert!(xclient.starts_with("XCLIENT ADDR=192.0.2.7 PORT=4242"));
    assert!(!pipelined, "AUTH was sent before the XCLIENT answer");
    assert!(auth.starts_with("AUTH PLAIN "), "{auth}");
}
