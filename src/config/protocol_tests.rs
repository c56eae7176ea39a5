//! Which protocol an upstream speaks: `[upstream.*] protocol`, or the
//! protocol of the listeners that use it, which must agree.

use super::*;

const FILE: &str = r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:143"
tls = "none"
directory = "idp"
upstream = "dovecot"

[listener.submission]
protocol = "smtp"
bind = "127.0.0.1:587"
tls = "none"
directory = "idp"
upstream = "UPSTREAM"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"

[upstream.postfix]
PROTOCOL
address = "127.0.0.1:10025"
login.method = "xclient"

[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#;

fn parse(upstream: &str, protocol: &str) -> std::result::Result<Config, ConfigError> {
    Config::parse(
        &FILE
            .replace("UPSTREAM", upstream)
            .replace("PROTOCOL", protocol),
    )
}

#[test]
fn the_protocol_of_an_upstream_is_given_or_inferred() {
    let c = parse("postfix", "").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.upstreams["postfix"].protocol, None);
    let c = parse("postfix", "protocol = \"smtp\"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.upstreams["postfix"].protocol, Some(Protocol::Smtp));
}

#[test]
fn a_listener_wired_to_an_upstream_of_another_protocol_is_refused() {
    let e = parse("postfix", "protocol = \"imap\"").unwrap_err();
    assert_eq!(e.key, "listener.submission.upstream", "{e}");
    assert!(e.to_string().contains("speaks imap"), "{e}");
    // Inferred: the IMAP listener said first what `dovecot` speaks.
    let e = parse("dovecot", "").unwrap_err();
    assert_eq!(e.key, "listener.submission.upstream", "{e}");
    assert!(e.to_string().contains("listener.imap.protocol"), "{e}");
    let e = parse("postfix", "protocol = \"gopher\"").unwrap_err();
    assert_eq!(e.key, "upstream.postfix.protocol", "{e}");
}

#[test]
fn a_toml_error_names_the_line_but_never_echoes_it() {
    let text = "[upstream.dovecot]\nlogin.secret = \"hunter2\" oops\n";
    let e = Config::parse(text).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
