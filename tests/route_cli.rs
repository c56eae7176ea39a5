//! `oauthbearer-proxy route USER` and `check` on upstreams with several
//! backends: the backend's name first, then why; a map file that does not
//! parse names its line.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oauthbearer-proxy");

fn config(dir: &std::path::Path, routing: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:1143"
tls = "none"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
backends = [ {{ name = "mail1", address = "127.0.0.1:1" }},
             {{ name = "mail2", address = "127.0.0.1:2" }} ]
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
health.timeout = "200ms"
{routing}

[directory.idp]
type = "oidc"
endpoint.url = "https://idp.example.com/userinfo"
required-scope = "email"
"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(path: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn route_prints_the_backend_then_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let user = format!("user{i}@example.com");
        let (code, out, err) = run(&path, &["route", &user]);
        assert_eq!(code, 0, "{out}{err}");
        let first = out.lines().next().unwrap().to_string();
        assert!(first == "mail1" || first == "mail2", "{out}");
        assert!(
            out.contains("why:      rendezvous hash of the user"),
            "{out}"
        );
        // Nothing listens there: the one check says so.
        assert!(out.contains("health:   DOWN"), "{out}");
        // The same answer every time.
        assert_eq!(
            run(&path, &["route", &user]).1.lines().next(),
            Some(first.as_str())
        );
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "20 users all on one backend");
}

#[test]
fn route_by_claim_and_by_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "routing.method = \"claim\"\nrouting.claim = \"mailhost\"\nrouting.fallback = \"refuse\"",
    );
    let (code, out, _) = run(&path, &["route", "--claim", "mail2", "alice@example.com"]);
    assert_eq!((code, out.lines().next()), (0, Some("mail2")), "{out}");
    assert!(
        out.contains("the token's claim `mailhost` = \"mail2\""),
        "{out}"
    );
    let (code, out, _) = run(&path, &["route", "--claim", "mail9", "alice@example.com"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("names no configured backend"), "{out}");
    let (code, out, _) = run(&path, &["route", "alice@example.com"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no claim `mailhost`"), "{out}");

    let map = dir.path().join("users.map");
    std::fs::write(&map, "alice@example.com mail2\nbob@example.com mail1\n").unwrap();
    let routing = format!(
        "routing.method = \"map\"\nrouting.map = \"{}\"\nrouting.fallback = \"refuse\"",
        map.display()
    );
    let path = config(dir.path(), &routing);
    let (code, out, _) = run(&path, &["route", "Bob@Example.com"]);
    assert_eq!((code, out.lines().next()), (0, Some("mail1")), "{out}");
    let (code, out, _) = run(&path, &["route", "carol@example.com"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not listed in"), "{out}");
}

#[test]
fn check_names_a_map_line_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.map");
    std::fs::write(&map, "alice@example.com mail2\nbob@example.com mail7\n").unwrap();
    let routing = format!(
        "routing.method = \"map\"\nrouting.map = \"{}\"",
        map.display()
    );
    let path = config(dir.path(), &routing);
    let (code, out, err) = run(&path, &["check"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("`upstream.dovecot.routing.map`"), "{err}");
    assert!(err.contains("line 2: no backend is named `mail7`"), "{err}");
}
