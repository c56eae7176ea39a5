//! The HTTP listener in-process, over a real socket on 127.0.0.1:0: the
//! routes, the answers of the logout endpoint before any key is needed,
//! and the body bound.

use super::*;
use crate::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:1143"
tls = "none"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"

[directory.idp]
type = "oidc"
issuer = "http://127.0.0.1:9"
required-scope = "email"
backchannel-logout.audience = "mail-client"

[directory.plain]
type = "oidc"
endpoint.url = "http://127.0.0.1:9/userinfo"
required-scope = "email"
"#;

/// Serves the router with the configuration's directories; the port.
async fn start() -> u16 {
    let config = Config::parse(CONFIG).expect("config");
    let shared = Arc::new(Shared::default());
    let mut directories = BTreeMap::new();
    for (name, d) in &config.directories {
        let v = Validator::new(d.clone()).expect("validator");
        directories.insert(name.clone(), Arc::new(v));
    }
    shared.set_directories(directories);
    let socket = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(serve(socket, router(shared)));
    port
}

/// One request; the whole answer (the server closes the connection).
async fn exchange(port: u16, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        // Until the server closes (a reset after a refused body too).
        while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the server closes after one answer");
    String::from_utf8_lossy(&answer).to_string()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn metrics_and_health_answer_as_before() {
    let port = start().await;
    let health = exchange(port, b"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let metrics = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    let post_metrics = exchange(port, &post("/metrics", "")).await;
    assert!(post_metrics.starts_with("HTTP/1.1 405"), "{post_metrics}");
    let nope = exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(nope.starts_with("HTTP/1.1 404"), "{nope}");
}

#[tokio::test]
async fn logout_endpoint_answers_before_any_key_is_fetched() {
    let port = start().await;
    for path in ["/backchannel-logout/plain", "/backchannel-logout/none"] {
        let a = exchange(port, &post(path, "logout_token=x")).await;
        assert!(a.starts_with("HTTP/1.1 404"), "{path}: {a}");
    }
    let get = exchange(
        port,
        b"GET /backchannel-logout/idp HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
    let missing = exchange(port, &post("/backchannel-logout/idp", "token=x")).await;
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    assert!(
        missing.contains(r#""error":"invalid_request""#),
        "{missing}"
    );
    assert!(missing.contains("logout_token missing"), "{missing}");
    let junk = exchange(
        port,
        &post("/backchannel-logout/idp", "logout_token=secret-junk"),
    )
    .await;
    assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");
    assert!(junk.contains("not a well-formed JWT"), "{junk}");
    assert!(!junk.contains("secret-junk"), "the token is echoed: {junk}");
    let no_form =
        b"POST /backchannel-logout/idp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let a = exchange(port, no_form).await;
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let port = start().await;
    let big = format!("logout_token={}", "a".repeat(MAX_BODY));
    let a = exchange(port, &post("/backchannel-logout/idp", &big)).await;
    assert!(a.starts_with("HTTP/1.1 413"), "{}", &a[..a.len().min(300)]);
}
