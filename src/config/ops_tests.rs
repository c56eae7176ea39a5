//! Configuration tests for the operations keys: shutdown timeout, metrics,
//! PROXY protocol in (listeners) and out (upstreams).

use super::*;

const BASE: &str = r#"
[server]
hostname = "mail.example.com"

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:993"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"

[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#;

fn parse_with(server: &str, listener: &str, upstream: &str) -> Result<Config> {
    let text = BASE
        .replace(
            "hostname = \"mail.example.com\"\n",
            &format!("hostname = \"mail.example.com\"\n{server}"),
        )
        .replace(
            "upstream = \"dovecot\"\n",
            &format!("upstream = \"dovecot\"\n{listener}"),
        )
        .replace(
            "login.secret = \"s3cret\"\n",
            &format!("login.secret = \"s3cret\"\n{upstream}"),
        );
    Config::parse(&text)
}

#[test]
fn defaults_are_off() {
    let c = parse_with("", "", "").unwrap();
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.server.http, None);
    assert!(c.listeners[0].proxy_protocol.is_none());
    assert!(!c.upstreams["dovecot"].proxy_protocol_v2);
}

#[test]
fn operations_keys() {
    let c = parse_with(
        "shutdown-timeout = \"5s\"\nmetrics.bind = \"127.0.0.1:9187\"\n",
        "proxy-protocol = true\nproxy-trusted-networks = [\"10.0.0.0/8\", \"::1\"]\n",
        "proxy-protocol = \"v2\"\n",
    )
    .unwrap();
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.server.http, Some("127.0.0.1:9187".parse().unwrap()));
    let nets = c.listeners[0].proxy_protocol.as_ref().unwrap();
    assert_eq!(nets.len(), 2);
    assert!(nets[0].contains("10.1.2.3".parse().unwrap()));
    assert!(c.upstreams["dovecot"].proxy_protocol_v2);
}

#[test]
fn http_bind_and_its_metrics_alias() {
    let addr: std::net::SocketAddr = "127.0.0.1:9187".parse().unwrap();
    for server in [
        "http.bind = \"127.0.0.1:9187\"\n",
        "metrics.bind = \"127.0.0.1:9187\"\n",
        "http.bind = \"127.0.0.1:9187\"\nmetrics.bind = \"127.0.0.1:9187\"\n",
    ] {
        let c = parse_with(server, "", "").unwrap();
        assert_eq!(c.server.http, Some(addr), "{server}");
    }
}

#[test]
fn invalid_operations_keys_name_the_key() {
    let cases = [
        (
            parse_with("shutdown-timeout = \"later\"\n", "", ""),
            "server.shutdown-timeout",
        ),
        (
            parse_with("metrics.bind = \"localhost\"\n", "", ""),
            "server.metrics.bind",
        ),
        (
            parse_with("http.bind = \"localhost\"\n", "", ""),
            "server.http.bind",
        ),
        (
            parse_with(
                "http.bind = \"127.0.0.1:9187\"\nmetrics.bind = \"127.0.0.1:9188\"\n",
                "",
                "",
            ),
            "server.metrics.bind",
        ),
        (
            parse_with("", "proxy-protocol = true\n", ""),
            "listener.imaps.proxy-trusted-networks",
        ),
        (
            parse_with("", "proxy-trusted-networks = [\"10.0.0.0/8\"]\n", ""),
            "listener.imaps.proxy-trusted-networks",
        ),
        (
            parse_with(
                "",
                "proxy-protocol = true\nproxy-trusted-networks = [\"10.0.0.0/33\"]\n",
                "",
            ),
            "listener.imaps.proxy-trusted-networks",
        ),
        (
            parse_with(
                "",
                "proxy-protocol = true\nproxy-trusted-networks = []\n",
                "",
            ),
            "listener.imaps.proxy-trusted-networks",
        ),
        (
            parse_with("", "", "proxy-protocol = \"v1\"\n"),
            "upstream.dovecot.proxy-protocol",
        ),
    ];
    for (result, key) in cases {
        match result {
            Ok(_) => panic!("accepted a config that should fail at {key}"),
            Err(e) => assert!(e.to_string().contains(key), "error for {key} was: {e}"),
        }
    }
}
