//! POP3 session transcripts: the AUTHORIZATION state, bearer and password
//! logins, against a fake Dovecot pop3-login on `127.0.0.1:0` (the shared
//! service and token support of [`crate::transcript`]).

use crate::transcript::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const APP_PASSWORD: &str = "app-password";
const BUSY_PASSWORD: &str = "busy-password";
const GREETING: &str = "+OK proxy.test ready.";
const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.";

/// A fake Dovecot pop3-login that trusts us (`[XCLIENT]`): the master
/// user and [`APP_PASSWORD`] are accepted, [`BUSY_PASSWORD`] is
/// `[SYS/TEMP]`, anything else `[AUTH]`. Records every line it gets.
struct FakePop3 {
    address: String,
    received: Arc<Mutex<Vec<String>>>,
}

impl FakePop3 {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let (r, mut w) = tcp.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"+OK [XCLIENT] Fake ready.\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let answer = fake_answer(&line);
                        record.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                        if w.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { address, received }
    }

    fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn fake_answer(line: &str) -> &'static str {
    if line.starts_with("XCLIENT ") {
        return "+OK Updated\r\n";
    }
    if let Some(b64) = line.strip_prefix("AUTH PLAIN ") {
        let message = crate::sasl::decode_response(b64.as_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&message).into_owned();
        let parts: Vec<&str> = text.split('\0').collect();
        return match parts.as_slice() {
            [_, "proxy", MASTER] | [_, _, APP_PASSWORD] => "+OK Logged in.\r\n",
            [_, _, BUSY_PASSWORD] => "-ERR [SYS/TEMP] Fake: try again later.\r\n",
            _ => "-ERR [AUTH] Authentication failed.\r\n",
        };
    }
    match line {
        "STAT" => "+OK 1 100\r\n",
        "QUIT" => "+OK Fake: logging out.\r\n",
        _ => "-ERR Fake: unknown.\r\n",
    }
}

fn listener() -> Listener {
    Listener {
        protocol: "pop3",
        ..Listener::imap()
    }
}

async fn session(listener: Listener) -> (Conn, FakePop3) {
    let up = FakePop3::start().await;
    let mut c = Conn::open(listener.service(&up.address)).await;
    c.expect(GREETING).await;
    (c, up)
}

#[tokio::test]
async fn commands_before_login() {
    let (mut c, up) = session(listener()).await;
    c.script(
        "
        C: CAPA
        S: +OK
        S: CAPA
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: SASL OAUTHBEARER XOAUTH2
        S: .
        C: AUTH
        S: +OK
        S: OAUTHBEARER
        S: XOAUTH2
        S: .
        C: STAT
        S: -ERR Unknown command.
        C: NOOP
        S: -ERR Unknown command.
        C: APOP alice 0123456789abcdef
        S: -ERR APOP is not offered here.
        C: STLS
        S: -ERR STLS is not offered here.
        C: CAPA now
        S: -ERR Too many arguments.
        C: USER alice@example.com
        S: -ERR [AUTH] Password logins are disabled here; use OAuth (AUTH OAUTHBEARER).
        C: PASS secret
        S: -ERR No username given.
        C: AUTH PLAIN AGFsaWNlAHB3
        S: -ERR Unsupported authentication mechanism.
        C: QUIT
        S: +OK Logging out.
        ",
    )
    .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "logout");
    assert!(up.received().is_empty(), "{:?}", up.received());
}

/// Both mechanisms, with SASL-IR and with a continuation: Dovecot's own
/// `+OK`, then the session reaches the upstream.
#[tokio::test]
async fn bearer_login_then_relay() {
    for (mechanism, ir) in [
        ("OAUTHBEARER", oauthbearer(Some(USER), &token())),
        ("XOAUTH2", xoauth2(USER, &token())),
    ] {
        for continuation in [false, true] {
            let (mut c, up) = session(listener()).await;
            if continuation {
                c.send(&format!("AUTH {mechanism}")).await;
                c.expect("+ ").await;
                c.send(&ir).await;
            } else {
                c.send(&format!("AUTH {mechanism} {ir}")).await;
            }
            c.script("S: +OK Logged in.\nC: STAT\nS: +OK 1 100").await;
            let plain = b64(&format!("{USER}\0proxy\0{MASTER}"));
            assert_eq!(
                up.received()[..2],
                [
                    "XCLIENT ADDR=192.0.2.7 PORT=4321".to_string(),
                    format!("AUTH PLAIN {plain}")
                ]
            );
            let outcome = c.outcome().await;
            assert_eq!(outcome.mechanism, Some(mechanism));
            assert_eq!(outcome.user.as_deref(), Some(USER));
        }
    }
}

#[tokio::test]
async fn refused_tokens_get_the_error_challenge_then_auth() {
    let (mut c, up) = session(listener().max_auth_failures(3)).await;
    for token in [forged_token(), expired_token()] {
        c.send(&format!("AUTH OAUTHBEARER {}", oauthbearer(None, &token)))
            .await;
        let json = challenge_json(&c.line().await, "+ ");
        assert_eq!(json["status"], "invalid_token", "{json}");
        c.send("AQ==").await;
        c.expect(AUTH_FAILED).await;
    }
    c.send(&format!(
        "AUTH XOAUTH2 {}",
        xoauth2(USER, &unscoped_token())
    ))
    .await;
    challenge_json(&c.line().await, "+ ");
    c.send("").await;
    c.expect(AUTH_FAILED).await;
    c.expect("-ERR [AUTH] Too many authentication failures.")
        .await;
    c.expect_closed().await;
    assert!(up.received().is_empty(), "{:?}", up.received());
}

#[tokio::test]
async fn user_pass_passthrough_relays_dovecots_verdict() {
    let (mut c, up) = session(listener().passthrough()).await;
    c.script(&format!(
        "
        C: USER {USER}
        S: +OK
        C: PASS wrong password
        S: -ERR [AUTH] Authentication failed.
        C: USER {USER}
        S: +OK
        C: PASS {BUSY_PASSWORD}
        S: -ERR [SYS/TEMP] Fake: try again later.
        C: AUTH PLAIN {}
        S: +OK Logged in.
        ",
        plain("", USER, APP_PASSWORD)
    ))
    .await;
    // The password went upstream as it was typed, spaces and all.
    assert!(up
        .received()
        .contains(&format!("AUTH PLAIN {}", plain("", USER, "wrong password"))));
    assert_eq!(c.outcome().await.mechanism, Some("PLAIN"));
}

#[tokio::test]
async fn upstream_down_is_sys_temp_and_the_session_goes_on() {
    let mut c = Conn::open(listener().passthrough().service(&down_address())).await;
    c.expect(GREETING).await;
    c.send(&format!("AUTH XOAUTH2 {}", xoauth2(USER, &token())))
        .await;
    let reply = c.line().await;
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    c.script(&format!("C: USER {USER}\nS: +OK\nC: PASS {APP_PASSWORD}"))
        .await;
    let reply = c.line().await;
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    c.script("C: QUIT\nS: +OK Logging out.").await;
}

#[tokio::test]
async fn the_pre_auth_deadline_says_goodbye() {
    let (mut c, _up) = session(listener().timeouts("1s", "35m")).await;
    c.send("AUTH XOAUTH2").await;
    c.expect("+ ").await;
    c.expect("-ERR Disconnected for inactivity.").await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "timeout");
}
