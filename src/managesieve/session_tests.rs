//! ManageSieve session transcripts: the pre-login state, bearer and
//! password logins and the limits, against a fake Dovecot managesieve
//! (here: [`crate::transcript`]'s fakes speak IMAP and SMTP only).

use crate::transcript::*;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const UNKNOWN_USER: &str = "nobody@example.com";
const APP_PASSWORD: &str = "app-password";
const BUSY_PASSWORD: &str = "busy-password";
const SIEVE: &str = "\"SIEVE\" \"fileinto vacation\"";

fn listener() -> Listener {
    Listener {
        protocol: "managesieve",
        ..Listener::imap()
    }
}

/// A fake managesieve-login: greets with its capabilities, takes XCLIENT
/// and `AUTHENTICATE "PLAIN" "<base64>"`, then answers LISTSCRIPTS and
/// LOGOUT. Every line received is recorded.
async fn fake() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, record.clone()));
        }
    });
    (address, received)
}

async fn serve(tcp: TcpStream, record: Arc<Mutex<Vec<String>>>) {
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    let greeting = format!(
        "\"IMPLEMENTATION\" \"Fake Pigeonhole\"\r\n{SIEVE}\r\n\"NOTIFY\" \"mailto\"\r\n\"SASL\" \"PLAIN\"\r\n\"XCLIENT\"\r\n\"VERSION\" \"1.0\"\r\nOK \"Fake ready.\"\r\n"
    );
    if w.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        let reply = if line.starts_with("XCLIENT ") {
            "OK \"Updated\"\r\n".to_string()
        } else if let Some(b64) = line.strip_prefix("AUTHENTICATE \"PLAIN\" ") {
            verdict(b64.trim_matches('"'))
        } else if line == "LISTSCRIPTS" {
            "\"sieved\" ACTIVE\r\nOK \"Listscripts completed.\"\r\n".to_string()
        } else {
            let _ = w.write_all(b"OK \"Logout completed.\"\r\n").await;
            return;
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn verdict(b64: &str) -> String {
    let message = crate::sasl::decode_response(b64.as_bytes()).unwrap_or_default();
    let parts: Vec<String> = String::from_utf8_lossy(&message)
        .split('\0')
        .map(str::to_string)
        .collect();
    match parts.as_slice() {
        [user, master, pw] if master == "proxy" && pw == MASTER && user != UNKNOWN_USER => {
            "OK \"Logged in.\"\r\n".into()
        }
        [_, master, _] if master == "proxy" => "NO \"Authorization failed\"\r\n".into(),
        [_, _, pw] if pw == APP_PASSWORD => "OK \"Logged in.\"\r\n".into(),
        [_, _, pw] if pw == BUSY_PASSWORD => "NO (TRYLATER) \"Try again later.\"\r\n".into(),
        _ => "NO \"Authentication failed.\"\r\n".into(),
    }
}

/// A session on `listener` in front of a fresh fake, its greeting read.
async fn session(listener: Listener) -> (Conn, Arc<Mutex<Vec<String>>>) {
    let (address, received) = fake().await;
    let mut c = Conn::open(listener.service(&address)).await;
    c.expect("\"IMPLEMENTATION\" \"oauthbearer-proxy\"").await;
    let sasl = c.line().await;
    assert!(sasl.starts_with("\"SASL\" \"OAUTHBEARER XOAUTH2"), "{sasl}");
    c.script(
        r#"
        S: "SIEVE" "fileinto vacation"
        S: "NOTIFY" "mailto"
        S: "VERSION" "1.0"
        S: OK "proxy.test ManageSieve ready."
        "#,
    )
    .await;
    (c, received)
}

/// The JSON of an error challenge (a quoted string), after which the
/// dummy answer gets `NO`.
async fn refused(c: &mut Conn, dummy: &str) -> serde_json::Value {
    let line = c.line().await;
    let json = challenge_json(line.trim_matches('"'), "");
    c.send(dummy).await;
    c.expect("NO \"Authentication failed.\"").await;
    json
}

#[tokio::test]
async fn commands_before_login() {
    let (mut c, _) = session(listener()).await;
    c.script(
        r#"
        C: CAPABILITY
        S: "IMPLEMENTATION" "oauthbearer-proxy"
        S: "SASL" "OAUTHBEARER XOAUTH2"
        S: "SIEVE" "fileinto vacation"
        S: "NOTIFY" "mailto"
        S: "VERSION" "1.0"
        S: OK "Capability completed."
        C: NOOP
        S: OK "Done"
        C: noop {2+}
        C: t1
        S: OK (TAG "t1") "Done"
        C: STARTTLS
        S: NO "STARTTLS is not offered here."
        C: LISTSCRIPTS
        S: NO "Command LISTSCRIPTS is unknown or not allowed before login."
        C: CAPABILITY now
        S: NO "Error in MANAGESIEVE command: unexpected arguments."
        C: AUTHENTICATE PLAIN
        S: NO "Error in AUTHENTICATE command: expected a mechanism name string."
        C: AUTHENTICATE "PLAIN" "AGEAYg=="
        S: NO "Unsupported authentication mechanism."
        C: LOGOUT
        S: OK "Logout completed."
        "#,
    )
    .await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "logout");
}

#[tokio::test]
async fn bearer_login_as_the_master_user_with_xclient_then_relay() {
    let (mut c, received) = session(listener()).await;
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(Some(USER), &token())
    ))
    .await;
    c.script(
        r#"
        S: OK "Logged in."
        C: LISTSCRIPTS
        S: "sieved" ACTIVE
        S: OK "Listscripts completed."
        "#,
    )
    .await;
    let plain = b64(&format!("{USER}\0proxy\0{MASTER}"));
    // The capabilities were learned first, on a connection that only said LOGOUT.
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            "LOGOUT".to_string(),
            "XCLIENT ADDR=192.0.2.7 PORT=4321".into(),
            format!("AUTHENTICATE \"PLAIN\" \"{plain}\""),
            "LISTSCRIPTS".into(),
        ]
    );
    let outcome = c.outcome().await;
    assert_eq!(outcome.user.as_deref(), Some(USER));
    assert_eq!(outcome.mechanism, Some("OAUTHBEARER"));
}

#[tokio::test]
async fn xoauth2_in_literals_and_after_an_empty_challenge() {
    let (mut c, _) = session(listener()).await;
    let ir = xoauth2(USER, &token());
    c.send_raw(&format!(
        "AUTHENTICATE {{7+}}\r\nXOAUTH2 {{{}+}}\r\n{ir}\r\n",
        ir.len()
    ))
    .await;
    c.expect("OK \"Logged in.\"").await;
    let (mut c, _) = session(listener()).await;
    c.send("AUTHENTICATE \"XOAUTH2\"").await;
    c.expect("\"\"").await;
    c.send_raw(&format!("{{{}}}\r\n{ir}\r\n", ir.len())).await;
    c.expect("OK \"Logged in.\"").await;
    // A cancelled exchange, and an answer that is not a string.
    let (mut c, _) = session(listener()).await;
    c.script(
        r#"
        C: AUTHENTICATE "OAUTHBEARER"
        S: ""
        C: "*"
        S: NO "Authentication aborted by client."
        C: AUTHENTICATE "OAUTHBEARER"
        S: ""
        C: bm90IGEgc3RyaW5n
        S: NO "Invalid base64 data in authentication response."
        "#,
    )
    .await;
}

#[tokio::test]
async fn refused_tokens_get_the_error_challenge_then_bye_after_three() {
    let (mut c, _) = session(listener()).await;
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(None, &forged_token())
    ))
    .await;
    assert_eq!(refused(&mut c, "\"AQ==\"").await["status"], "invalid_token");
    c.send(&format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"",
        xoauth2(USER, &unscoped_token())
    ))
    .await;
    assert_eq!(refused(&mut c, "\"\"").await["status"], "400");
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(Some("bob@example.com"), &token())
    ))
    .await;
    assert_eq!(
        refused(&mut c, "\"AQ==\"").await["status"],
        "invalid_request"
    );
    c.expect("BYE \"Too many authentication failures.\"").await;
    c.expect_closed().await;
    assert_eq!(c.outcome().await.result, "too-many-failures");
}

#[tokio::test]
async fn upstream_refusal_and_upstream_down() {
    let (mut c, _) = session(listener()).await;
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(None, &token_for(UNKNOWN_USER))
    ))
    .await;
    c.expect("NO \"The mail server does not accept this account.\"")
        .await;
    let mut c = Conn::open(listener().service(&down_address())).await;
    let greeting = c.line().await;
    assert_eq!(greeting, "\"IMPLEMENTATION\" \"oauthbearer-proxy\"");
    while c.line().await != "OK \"proxy.test ManageSieve ready.\"" {}
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(None, &token())
    ))
    .await;
    c.expect("NO (TRYLATER) \"Mail server temporarily unavailable, try again later.\"")
        .await;
}

#[tokio::test]
async fn password_passthrough_relays_dovecots_answers() {
    let (mut c, received) = session(listener().passthrough()).await;
    for (password, reply) in [
        ("wrong", "NO \"Authentication failed.\""),
        (BUSY_PASSWORD, "NO (TRYLATER) \"Try again later.\""),
        (APP_PASSWORD, "OK \"Logged in.\""),
    ] {
        c.send(&format!(
            "AUTHENTICATE \"PLAIN\" \"{}\"",
            plain("", USER, password)
        ))
        .await;
        c.expect(reply).await;
    }
    let got = received.lock().unwrap().clone();
    assert!(got.iter().all(|l| !l.contains("proxy")), "{got:?}");
    assert_eq!(c.outcome().await.result, "relayed");
}

#[tokio::test]
async fn limits_literals_and_timeouts() {
    let (mut c, _) = session(listener().timeouts("10s", "1s")).await;
    c.send(&format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"",
        oauthbearer(None, &token())
    ))
    .await;
    c.expect("OK \"Logged in.\"").await;
    c.expect("BYE \"Disconnected for inactivity.\"").await;
    c.expect_closed().await;
    let (mut c, _) = session(listener().timeouts("1s", "35m")).await;
    c.expect("BYE \"Disconnected for inactivity.\"").await;
    c.expect_closed().await;
    let (mut c, _) = session(listener()).await;
    c.send("NOOP {999999999+}").await;
    c.expect("BYE \"Literal too large.\"").await;
    c.expect_closed().await;
}
