//! Fake upstreams on `127.0.0.1:0`: just enough Dovecot IMAP (greeting,
//! `ID`, `AUTHENTICATE PLAIN`, then any tagged command and `LOGOUT`) or
//! Postfix submission (banner, EHLO with XCLIENT and AUTH, XCLIENT,
//! `AUTH PLAIN`, then any command and `QUIT`) to let the proxy log in or
//! refuse it. Every line received is recorded for the test to inspect.
//!
//! One set of rules judges a SASL PLAIN login, so each test picks its case
//! by the credentials it sends: the master user is accepted (except for
//! [`UNKNOWN_USER`]), [`APP_PASSWORD`] is accepted, [`BUSY_PASSWORD`] is a
//! temporary refusal, anything else is refused.

use super::MASTER;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A password the fake upstreams accept for any user.
pub const APP_PASSWORD: &str = "app-password";
/// A password the fake upstreams refuse temporarily (IMAP `NO [UNAVAILABLE]`, SMTP 454).
pub const BUSY_PASSWORD: &str = "busy-password";
/// A user the master login is refused for (IMAP `[AUTHORIZATIONFAILED]`, XCLIENT 501, as Postfix refuses a LOGIN= value).
pub const UNKNOWN_USER: &str = "nobody@example.com";
/// The fake IMAP upstream's capabilities after login.
pub const IMAP_CAPABILITIES: &str = "IMAP4rev1 IDLE UIDPLUS";

/// A running fake upstream.
pub struct Upstream {
    pub address: String,
    received: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    /// Every line received so far, on every connection, in order.
    pub fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a line exactly `line` was received.
    pub fn got(&self, line: &str) -> bool {
        self.received().iter().any(|l| l == line)
    }
}

/// An address where nobody listens (an upstream that is down).
pub fn down_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local address").to_string()
}

/// An upstream that accepts connections and never says a word.
pub async fn blackhole() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    Upstream {
        address,
        received: Arc::default(),
    }
}

/// A fake Dovecot.
pub async fn imap() -> Upstream {
    spawn(
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN] Fake Dovecot ready.\r\n",
        imap_reply,
    )
    .await
}

/// A fake Postfix submission service.
pub async fn smtp() -> Upstream {
    spawn(b"220 fake.upstream ESMTP Postfix\r\n", smtp_reply).await
}

/// The reply to one line, and whether to close after it.
type Replier = fn(&str) -> (String, bool);

async fn spawn(greeting: &'static [u8], reply: Replier) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address").to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, greeting, reply, record.clone()));
        }
    });
    Upstream { address, received }
}

async fn serve(tcp: TcpStream, greeting: &[u8], reply: Replier, record: Arc<Mutex<Vec<String>>>) {
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    if w.write_all(greeting).await.is_err() {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        let (text, close) = reply(&line);
        if w.write_all(text.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// How the fake upstreams judge a SASL PLAIN login.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Refused,
    Temporary,
    Unauthorized,
}

fn judge(base64: &str) -> Verdict {
    let message = crate::sasl::decode_response(base64.as_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&message);
    let parts: Vec<&str> = text.split('\0').collect();
    match parts.as_slice() {
        [UNKNOWN_USER, "proxy", MASTER] => Verdict::Unauthorized,
        [_, "proxy", MASTER] => Verdict::Accepted,
        [_, _, APP_PASSWORD] => Verdict::Accepted,
        [_, _, BUSY_PASSWORD] => Verdict::Temporary,
        _ => Verdict::Refused,
    }
}

/// The rest of `line` after `prefix`, which it starts with ignoring case.
fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

fn imap_reply(line: &str) -> (String, bool) {
    let (tag, command) = line.split_once(' ').unwrap_or((line, ""));
    let text = if after(command, "ID ").is_some() {
        format!("* ID (\"name\" \"Fake\")\r\n{tag} OK ID completed.\r\n")
    } else if let Some(b64) = after(command, "AUTHENTICATE PLAIN ") {
        let verdict = match judge(b64) {
            Verdict::Accepted => format!("OK [CAPABILITY {IMAP_CAPABILITIES}] Logged in"),
            Verdict::Refused => "NO [AUTHENTICATIONFAILED] Fake: authentication failed.".into(),
            Verdict::Temporary => "NO [UNAVAILABLE] Fake: try again later.".into(),
            Verdict::Unauthorized => "NO [AUTHORIZATIONFAILED] Fake: not allowed.".into(),
        };
        format!("{tag} {verdict}\r\n")
    } else if command.eq_ignore_ascii_case("CAPABILITY") {
        format!("* CAPABILITY {IMAP_CAPABILITIES}\r\n{tag} OK Capability completed.\r\n")
    } else if command.eq_ignore_ascii_case("LOGOUT") {
        return (
            format!("* BYE Fake: logging out\r\n{tag} OK Logout completed.\r\n"),
            true,
        );
    } else {
        format!("{tag} OK Fake: {command} done.\r\n")
    };
    (text, false)
}

/// The fake Postfix's EHLO keywords.
pub const SMTP_EHLO: &str = "250-fake.upstream\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
    250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN\r\n250-AUTH PLAIN LOGIN\r\n\
    250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

fn smtp_reply(line: &str) -> (String, bool) {
    let text = if after(line, "EHLO ").is_some() {
        SMTP_EHLO
    } else if let Some(args) = after(line, "XCLIENT ") {
        if args.contains(&format!("LOGIN={UNKNOWN_USER}")) {
            "501 5.5.4 Fake: bad LOGIN= value\r\n"
        } else {
            "220 fake.upstream ESMTP Postfix\r\n"
        }
    } else if let Some(b64) = after(line, "AUTH PLAIN ") {
        match judge(b64) {
            Verdict::Accepted => "235 2.7.0 Fake: authentication successful\r\n",
            Verdict::Temporary => "454 4.7.0 Fake: temporary authentication failure\r\n",
            _ => "535 5.7.8 Fake: authentication failed\r\n",
        }
    } else if line.eq_ignore_ascii_case("QUIT") {
        return ("221 2.0.0 Fake: bye\r\n".into(), true);
    } else {
        "250 2.0.0 Fake: ok\r\n"
    };
    (text.to_string(), false)
}
