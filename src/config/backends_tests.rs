//! `[upstream.*]` with several backends: what loads, and what `check`
//! refuses, by key.

use super::*;

const FILE: &str = r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:143"
tls = "none"
directory = "idp"
upstream = "dovecot"
PASSTHROUGH

[upstream.dovecot]
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
GROUP

[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#;

const TWO: &str = r#"backends = [ { name = "mail1", address = "10.0.0.11:143" },
             { name = "mail2", address = "10.0.0.12:143", weight = 2 } ]"#;

fn parse(group: &str) -> std::result::Result<Config, ConfigError> {
    parse_with(group, "")
}

fn parse_with(group: &str, listener: &str) -> std::result::Result<Config, ConfigError> {
    Config::parse(
        &FILE
            .replace("GROUP", group)
            .replace("PASSTHROUGH", listener),
    )
}

fn refused(group: &str, key: &str, words: &str) {
    let e = parse(group).unwrap_err();
    assert_eq!(e.key, key, "{e}");
    assert!(e.message.contains(words), "{e}");
}

#[test]
fn a_single_address_is_a_group_of_one_without_checks() {
    let c = parse("address = \"mail.example.com:143\"").unwrap();
    let b = &c.upstreams["dovecot"].backends;
    assert_eq!(b.list.len(), 1);
    assert_eq!(b.list[0].name, "dovecot");
    assert_eq!(b.list[0].tls_name, "mail.example.com");
    assert!(b.health.is_none() && !b.failover);
}

#[test]
fn a_group_with_defaults() {
    let c = parse(TWO).unwrap();
    let up = &c.upstreams["dovecot"];
    let b = &up.backends;
    assert_eq!(b.list[1].weight, 2);
    assert_eq!(up.address, "10.0.0.11:143");
    assert_eq!(up.for_backend(1).address, "10.0.0.12:143");
    assert_eq!(up.for_backend(1).tls_name, "10.0.0.12");
    assert!(matches!(b.routing, Routing::Hash));
    let health = b.health.unwrap();
    assert_eq!(health.interval, Duration::from_secs(5));
    assert_eq!(health.timeout, Duration::from_secs(2));
}

#[test]
fn claim_routing_reaches_the_directories() {
    let c = parse(&format!(
        "{TWO}\nrouting.method = \"claim\"\nrouting.claim = \"mailhost\"\nfailover = true"
    ))
    .unwrap();
    assert_eq!(c.directories["idp"].fields.routing, vec!["mailhost"]);
    assert!(c.upstreams["dovecot"].backends.failover);
}

#[test]
fn map_routing_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.map");
    std::fs::write(&path, "alice@example.com mail2\n").unwrap();
    let group = format!(
        "{TWO}\nrouting.method = \"map\"\nrouting.map = \"{}\"",
        path.display()
    );
    let c = parse(&group).unwrap();
    let Routing::Map(map) = &c.upstreams["dovecot"].backends.routing else {
        panic!("not a map");
    };
    assert_eq!(map.get("Alice@example.com"), Some(1));
    std::fs::write(&path, "alice@example.com mail3\n").unwrap();
    let e = parse(&group).unwrap_err();
    assert_eq!(e.key, "upstream.dovecot.routing.map", "{e}");
    assert!(
        e.message.contains("line 1: no backend is named `mail3`"),
        "{e}"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(parse(&group).unwrap_err().message.contains("cannot read"));
}

#[test]
fn check_refuses_bad_groups() {
    let key = |k: &str| format!("upstream.dovecot.{k}");
    refused("", &key("address"), "is required");
    refused(
        &format!("address = \"a:1\"\n{TWO}"),
        &key("backends"),
        "not both",
    );
    refused("backends = []", &key("backends"), "names no backend");
    refused(
        r#"backends = [ { name = "a", address = "a:1", weight = 0 }, { name = "b", address = "b:1" } ]"#,
        &key("backends[0].weight"),
        "0 is not a weight",
    );
    refused(
        r#"backends = [ { name = "a", address = "a:1" }, { name = "a", address = "b:1" } ]"#,
        &key("backends[1].name"),
        "twice",
    );
    refused(
        r#"backends = [ { name = "a b", address = "a:1" } ]"#,
        &key("backends[0].name"),
        "not a name",
    );
    refused(
        r#"backends = [ { name = "a", address = "a" } ]"#,
        &key("backends[0].address"),
        "not host:port",
    );
    refused(
        &format!("{TWO}\nrouting.method = \"claim\""),
        &key("routing.claim"),
        "is required",
    );
    refused(
        &format!("{TWO}\nrouting.method = \"map\""),
        &key("routing.map"),
        "is required",
    );
    refused(
        &format!("{TWO}\nrouting.claim = \"x\""),
        &key("routing.claim"),
        "only read",
    );
    refused(
        &format!("{TWO}\nrouting.method = \"random\""),
        &key("routing.method"),
        "not one of",
    );
    refused(
        &format!("{TWO}\nrouting.fallback = \"guess\""),
        &key("routing.fallback"),
        "not one of",
    );
    refused(
        &format!("{TWO}\nhealth.timeout = \"10s\""),
        &key("health.timeout"),
        "at most health.interval",
    );
}

#[test]
fn claim_routing_with_passwords_needs_the_hash_fallback() {
    let group = format!(
        "{TWO}\nrouting.method = \"claim\"\nrouting.claim = \"mailhost\"\nrouting.fallback = \"refuse\""
    );
    assert!(parse(&group).is_ok());
    let e = parse_with(&group, "password-passthrough = true").unwrap_err();
    assert_eq!(e.key, "upstream.dovecot.routing.fallback", "{e}");
}
