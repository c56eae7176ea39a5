//! Secrets in the configuration: read straight into `Secret`, and never
//! echoed by an error about the file.

use super::*;

const SECRET: &str = "hunter2-Zq9";

/// An upstream block whose last line is `line`.
fn upstream_with(line: &str) -> String {
    format!(
        "[listener.imaps]\nprotocol = \"imap\"\nbind = \"127.0.0.1:993\"\ndirectory = \"idp\"\nupstream = \"dovecot\"\n\n\
         [upstream.dovecot]\naddress = \"127.0.0.1:143\"\n{line}\n"
    )
}

#[test]
fn a_malformed_line_holding_a_secret_is_not_echoed() {
    for line in [
        format!("login.secret = {SECRET}"),
        format!("login.secret = \"{SECRET}"),
        format!("login.secret = \"{SECRET}\\q\""),
        format!("login.secret = '{SECRET}"),
        format!("login.secret \"{SECRET}\""),
        format!("login.secret = \"{SECRET}\" trailing"),
        format!("login.secret == \"{SECRET}\""),
        format!("login.secret = [\"{SECRET}\"]"),
        format!("login = \"{SECRET}\""),
        format!("tls = \"none\", expected = \"{SECRET}\""),
        SECRET.to_string(),
    ] {
        let e = Config::parse(&upstream_with(&line)).err().unwrap();
        let shown = e.to_string();
        assert!(!shown.contains(SECRET), "{line:?} → {shown}");
        assert!(shown.contains("at line 9, column"), "{line:?} → {shown}");
    }
    // An unclosed multi-line string is reported where the file ends.
    let e = Config::parse(&upstream_with(&format!("login.secret = \"\"\"{SECRET}")));
    let shown = e.err().unwrap().to_string();
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
    let e = Config::parse(&upstream_with("login.secret = 73313373"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("invalid type: integer"), "{e}");
    assert!(!e.contains("7331"), "{e}");
    // Not a secret key, but a value is never quoted either.
    let e = Config::parse(&upstream_with("login = \"pa, expected ss\""))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("invalid type: string (not shown), expected struct RawLogin"),
        "{e}"
    );
    assert!(!e.contains("pa,"), "{e}");
}

#[test]
fn secret_keys_deserialize_into_redacted_secrets() {
    let text = "[upstream.u]\naddress = \"a:1\"\nlogin.method = \"master-user\"\nlogin.secret = \"hunter2-Zq9\"\n\
                [directory.d]\ntype = \"oidc\"\nsecret = \"hunter2-Zq9\"\nauth.secret = \"hunter2-Zq9\"\nauth.token = \"hunter2-Zq9\"\n";
    let raw: raw::RawConfig = toml::from_str(text).unwrap();
    let login = raw.upstream["u"].login.as_ref().unwrap();
    assert_eq!(login.secret.as_ref().map(Secret::expose), Some(SECRET));
    let d = &raw.directory["d"];
    let auth = d.auth.as_ref().unwrap();
    for s in [&d.secret, &auth.secret, &auth.token] {
        assert_eq!(s.as_ref().map(Secret::expose), Some(SECRET));
    }
    // Debug of the whole raw file (as a `{:?}` in a log line would show it).
    let shown = format!("{raw:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("Secret(<redacted>)"), "{shown}");
}

#[test]
fn a_file_secret_is_trimmed_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\r\n")).unwrap();
    let value = Secret::new(format!("%{{file:{}}}%", path.display()));
    let s = resolve_secret("k", value).unwrap();
    assert_eq!(s.expose(), SECRET);
}
