//! The command line: `check` validates a whole configuration and names the
//! offending key; the binary refuses to start on a broken one.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_oauthbearer-proxy");

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn certs(dir: &std::path::Path) -> (String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/make-test-certs.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .expect("run make-test-certs.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    )
}

fn config(cert: &str, key: &str, secret: &str) -> String {
    format!(
        r#"
[server]
hostname = "mail.example.com"
[server.tls]
cert = "{cert}"
key = "{key}"

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:0"
tls = "implicit"
directory = "authelia"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "{secret}"

[directory.authelia]
type = "oidc"
timeout = "15s"
endpoint.url = "https://auth.example.com/api/oidc/userinfo"
endpoint.method = "userinfo"
required-scope = "email"
fields.email = "email"
fields.username = "preferred_username"
fields.full-name = "name"
"#
    )
}

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_accepts_a_good_config_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certs(dir.path());
    let secret_file = write(dir.path(), "master-secret", "s3cret\n");
    let good = write(
        dir.path(),
        "good.toml",
        &config(
            &cert,
            &key,
            &format!("%{{file:{}}}%", secret_file.display()),
        ),
    );
    let (ok, text) = check(&good);
    assert!(ok, "{text}");
    assert!(text.contains("configuration OK"), "{text}");

    let cases = [
        (config("/nonexistent/cert.pem", &key, "x"), "server.tls"),
        (config(&cert, &cert, "x"), "server.tls"),
        (
            config(&cert, &key, "%{env:OBP_CLI_TEST_UNSET}%"),
            "upstream.dovecot.login.secret",
        ),
        (
            config(&cert, &key, "%{file:/nonexistent/secret}%"),
            "upstream.dovecot.login.secret",
        ),
        (
            config(&cert, &key, "x")
                .replace("directory = \"authelia\"", "directory = \"keycloak\""),
            "listener.imaps.directory",
        ),
        (
            config(&cert, &key, "x").replace(
                "endpoint.method = \"userinfo\"",
                "endpoint.method = \"magic\"",
            ),
            "directory.authelia.endpoint.method",
        ),
    ];
    for (i, (text, key_name)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.toml"), text);
        let (ok, out) = check(&path);
        assert!(!ok, "accepted a config broken at {key_name}");
        assert!(out.contains(key_name), "message for {key_name}: {out}");
    }
}

#[test]
fn run_refuses_a_broken_config_and_a_missing_file() {
    let out = Command::new(BIN)
        .arg("--config")
        .arg("/nonexistent/config.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.toml"));
}
