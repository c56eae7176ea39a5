//! Packaging: `cargo deb` turns the binary under test into a Debian package
//! (binary, systemd unit, example configuration as a conffile, a system
//! user made in postinst); the test installs it with dpkg, checks what it
//! put where, starts the installed binary as the package's user with a real
//! configuration, waits for its READY=1 and reads a mailbox through it.
//! The package is purged at the end, whatever happens.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PACKAGE: &str = "oauthbearer-proxy";
const USER: &str = "oauthbearer-proxy";

/// Purges the package when the test ends (passed or not).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The installed proxy, stopped by its PID.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `from` into `dir`, readable by the package's user only.
fn give(from: &str, dir: &Path, name: &str) -> String {
    let to = dir.join(name);
    std::fs::copy(from, &to).expect("copy");
    ok(&run(Command::new("chown").arg(USER).arg(&to)), "chown");
    path_str(&to)
}

#[test]
fn cargo_deb_package_installs_and_starts() {
    let peers = peers_read();
    let out_dir = tempfile::tempdir().expect("tempdir");
    // The binary under test (dev profile), stripped; `cargo deb` alone
    // builds the release package.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    ok(
        &run(Command::new("timeout")
            .args([
                "-k",
                "5",
                "300",
                cargo,
                "deb",
                "--profile",
                "dev",
                "--no-build",
                "--fast",
            ])
            .arg("-o")
            .arg(out_dir.path())
            .current_dir(manifest_dir())),
        "cargo deb (scripts/install-deps.sh installs cargo-deb)",
    );
    let deb = std::fs::read_dir(out_dir.path())
        .expect("read output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let _installed = Installed;
    ok(
        &run(Command::new("timeout")
            .args(["-k", "5", "120", "dpkg", "-i"])
            .arg(&deb)),
        "dpkg -i",
    );
    ok(
        &run(Command::new("getent").args(["passwd", USER])),
        "the system user",
    );
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/oauthbearer-proxy/config.toml"),
        "not a conffile: {conffiles:?}"
    );
    assert!(Path::new("/usr/lib/systemd/system/oauthbearer-proxy.service").is_file());
    let config = std::fs::metadata("/etc/oauthbearer-proxy/config.toml").expect("config");
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    // The shipped example is a template: `check` names what is missing.
    let check = run(Command::new("/usr/bin/oauthbearer-proxy")
        .args(["check", "--config", "/etc/oauthbearer-proxy/config.toml"])
        .env("OAUTHBEARER_PROXY_EXAMPLE_SECRET", "x"));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("/etc/oauthbearer-proxy/tls/"),
        "{check:?}"
    );

    // Start the installed binary as the package's user with a working config.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ports: BTreeMap<String, u16> = ["imaps", "imap", "imap-plain", "submissions", "submission"]
        .iter()
        .map(|n| (n.to_string(), free_port()))
        .collect();
    let secret = peers.str(&["dovecot", "master_secret_file"]);
    let text = Proxy::config_text(&peers, &ProxyOptions::new(&peers), &ports)
        .replace(
            &peers.str(&["certs", "cert"]),
            &give(&peers.str(&["certs", "cert"]), dir.path(), "cert.pem"),
        )
        .replace(
            &peers.str(&["certs", "key"]),
            &give(&peers.str(&["certs", "key"]), dir.path(), "key.pem"),
        )
        .replace(&secret, &give(&secret, dir.path(), "master-secret"));
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    ok(&run(Command::new("chown").arg(USER).arg(&config)), "chown");
    let notify = dir.path().join("notify");
    let socket = UnixDatagram::bind(&notify).expect("notify socket");
    std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o777)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
    // setpriv execs (no extra process): the child's PID is the proxy's.
    let _running = Running(
        Command::new("setpriv")
            .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
            .arg("/usr/bin/oauthbearer-proxy")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("setpriv"),
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 from the installed proxy ({e}):\n{}",
            std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
        )
    });
    assert!(buf[..n].starts_with(b"READY=1"), "{:?}", &buf[..n]);

    let token = mint_token(&peers, "alice", "openid email profile", 300);
    let port = ports["imaps"];
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            &peers.ca(),
            "--resolve",
        ])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!(
            "imaps://localhost:{port}/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%20(SUBJECT)"
        ))
        .args(["-u", "alice@example.com:", "--oauth2-bearer", &token]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Welcome alice@example.com"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
    );
}
