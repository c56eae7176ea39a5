//! A throw-away PostgreSQL (Debian's `postgresql`) for the app-password
//! store's tests: its own data directory under a temporary directory,
//! listening on a loopback port (password authentication, SCRAM) and a
//! socket directory of its own, run as the `postgres` user (tests run as
//! root), stopped by PID when dropped. A missing PostgreSQL fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub const USER: &str = "proxy";
pub const PASSWORD: &str = "pg-test-secret";

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
}

fn bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's {name} is not in /usr/lib/postgresql/*/bin: install Debian's \
             `postgresql` (bash scripts/install-deps.sh)"
        )
    })
}

fn as_postgres(program: PathBuf) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// A server that takes TCP connections over TLS only (`hostssl`), with
    /// a test CA's certificate for 127.0.0.1; the CA is [`Self::ca`].
    pub fn start_tls() -> Postgres {
        Self::start_with(true)
    }

    /// The test CA of a [`Self::start_tls`] server.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    fn start_with(tls: bool) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = super::run(
            as_postgres(bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    USER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--no-sync"]),
        );
        assert!(out.status.success(), "initdb: {out:?}");
        let ssl = if tls {
            tls_only(dir.path(), &data)
        } else {
            String::new()
        };
        for _ in 0..3 {
            let port = super::free_port();
            let out = super::run(
                as_postgres(bin("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.path().join("postgres.log"))
                    .arg("-o")
                    .arg(format!(
                        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{ssl}",
                        dir.path().display()
                    ))
                    .args(["-w", "-t", "30", "start"]),
            );
            if out.status.success() {
                return Postgres { port, dir, data };
            }
        }
        let log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    /// The store URL (the password goes in `store.password`).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The `[store]` section for a proxy on this database.
    pub fn store_section(&self) -> String {
        format!(
            "[store]\nurl = \"{}\"\npassword = \"{PASSWORD}\"\n",
            self.url()
        )
    }

    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// Test certificates for the server (readable by `postgres`, the key
/// 0600) and a `pg_hba.conf` that refuses TCP without TLS; returns the
/// server options that switch TLS on.
fn tls_only(dir: &std::path::Path, data: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let certs = dir.join("certs");
    let script = super::manifest_dir().join("certs/make-test-certs.sh");
    let out = super::run(Command::new("bash").arg(script).arg(&certs));
    assert!(out.status.success(), "make-test-certs.sh: {out:?}");
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        let out = super::run(Command::new("chown").arg("postgres").arg(certs.join(f)));
        assert!(out.status.success(), "chown: {out:?}");
    }
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    let tls_only: String = text
        .lines()
        .map(|l| match l.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&hba, tls_only).expect("pg_hba.conf");
    format!(
        " -c ssl=on -c ssl_cert_file={0}/cert.pem -c ssl_key_file={0}/key.pem",
        certs.display()
    )
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else {
            return;
        };
        // Fast shutdown: SIGINT to the postmaster, then wait for it to go.
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = &self.dir;
    }
}
