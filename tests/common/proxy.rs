//! The proxy binary, started with a generated configuration whose
//! listeners point at the peers; its ports, log and control socket.

use super::{free_port, run, userinfo_directory, Peers};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ProxyOptions {
    /// The body of `[directory.test]`.
    pub directory: String,
    pub passthrough: bool,
    pub max_auth_failures: u32,
    pub auth_failure_delay: &'static str,
    /// Upstream IMAP address override (e.g. a dead port).
    pub imap_upstream: Option<String>,
    /// Upstream POP3 address override.
    pub pop3_upstream: Option<String>,
    /// Raw TOML appended to the file.
    pub extra: String,
    /// Raw TOML lines inside `[server]` (e.g. `shutdown-timeout = "5s"`).
    pub server_extra: String,
    /// Extra environment for the proxy process.
    pub env: Vec<(String, String)>,
    pub log_level: &'static str,
    /// `server.limits.pre-auth-timeout`.
    pub pre_auth_timeout: &'static str,
    /// More `key = value` lines inside `[server.limits]`.
    pub limits: String,
    /// `connect-timeout` of both upstreams.
    pub connect_timeout: &'static str,
    /// The listeners' `directory` value (TOML): `"test"` or a list.
    pub listener_directories: String,
    /// Raw TOML added to every listener block (e.g. `password-tokens = true`).
    pub listener_extra: String,
    /// `identity` of the Dovecot upstreams, IMAP and ManageSieve ("email" by default).
    pub imap_identity: &'static str,
    /// `login.secret` of the Dovecot upstreams (IMAP and ManageSieve)
    /// instead of the master secret's file.
    pub imap_master_secret: Option<String>,
    /// Raw TOML added to `[server.tls]` (e.g. `session-tickets = 0`).
    pub tls_extra: String,
    /// Raw TOML added to every upstream block (e.g. `identity-case = "lower"`).
    pub upstream_extra: String,
}

impl ProxyOptions {
    pub fn new(peers: &Peers) -> Self {
        Self {
            directory: userinfo_directory(peers),
            passthrough: true,
            max_auth_failures: 3,
            auth_failure_delay: "0s",
            imap_upstream: None,
            pop3_upstream: None,
            extra: String::new(),
            server_extra: String::new(),
            env: Vec::new(),
            log_level: "debug",
            pre_auth_timeout: "30s",
            limits: String::new(),
            // Above Dovecot's own authentication penalty (up to 15 s for an
            // address with recent password failures, and every test client
            // is 127.0.0.1), so a penalised login is slow, not a failure.
            connect_timeout: "20s",
            listener_directories: "\"test\"".to_string(),
            listener_extra: String::new(),
            imap_identity: "email",
            imap_master_secret: None,
            tls_extra: String::new(),
            upstream_extra: String::new(),
        }
    }
}

pub struct Proxy {
    child: Child,
    /// Where the proxy's READY=1 arrives, until it did.
    notify: Option<std::os::unix::net::UnixDatagram>,
    ports: BTreeMap<String, u16>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// The listeners every test proxy has: name, protocol, tls, upstream.
const LISTENERS: &[(&str, &str, &str, &str)] = &[
    ("imaps", "imap", "implicit", "dovecot"),
    ("imap", "imap", "starttls", "dovecot"),
    ("imap-plain", "imap", "none", "dovecot"),
    ("submissions", "smtp", "implicit", "postfix"),
    ("submission", "smtp", "starttls", "postfix"),
    ("pop3s", "pop3", "implicit", "dovecot-pop3"),
    ("pop3", "pop3", "starttls", "dovecot-pop3"),
    ("sieve-tls", "managesieve", "implicit", "dovecot-sieve"),
    ("sieve", "managesieve", "starttls", "dovecot-sieve"),
];

impl Proxy {
    pub fn config_text(
        peers: &Peers,
        opts: &ProxyOptions,
        ports: &BTreeMap<String, u16>,
    ) -> String {
        let mut c = format!(
            "[server]\nhostname = \"proxy.test\"\n{}\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}\n[server.limits]\nauth-failure-delay = \"{}\"\nmax-auth-failures = {}\npre-auth-timeout = \"{}\"\n{}\n",
            opts.server_extra,
            peers.str(&["certs", "cert"]),
            peers.str(&["certs", "key"]),
            opts.tls_extra,
            opts.auth_failure_delay,
            opts.max_auth_failures,
            opts.pre_auth_timeout,
            opts.limits
        );
        for (name, protocol, tls, upstream) in LISTENERS {
            // A caller may give ports for some listeners only.
            let Some(port) = ports.get(*name) else {
                continue;
            };
            c.push_str(&format!(
                "[listener.{name}]\nprotocol = \"{protocol}\"\nbind = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\ndirectory = {}\nupstream = \"{upstream}\"\npassword-passthrough = {}\n{}\n",
                opts.listener_directories, opts.passthrough, opts.listener_extra
            ));
        }
        let imap_addr = opts
            .imap_upstream
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", peers.port(&["dovecot", "imap_port"])));
        // The Dovecot upstreams: one per protocol, all logging in as the
        // master user.
        let dovecot = |name: &str, protocol: &str, addr: &str, secret: &str, extra: &str| {
            format!(
                "[upstream.{name}]\nprotocol = \"{protocol}\"\naddress = \"{addr}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"{secret}\"\nidentity = \"{}\"\nconnect-timeout = \"{}\"\n{extra}\n",
                peers.str(&["dovecot", "master_user"]),
                opts.imap_identity,
                opts.connect_timeout,
            )
        };
        let file_secret = format!(
            "%{{file:{}}}%",
            peers.str(&["dovecot", "master_secret_file"])
        );
        let pop3_addr = opts
            .pop3_upstream
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", peers.port(&["dovecot", "pop3_port"])));
        let sieve_addr = format!("127.0.0.1:{}", peers.port(&["dovecot", "managesieve_port"]));
        let secret = opts
            .imap_master_secret
            .clone()
            .unwrap_or_else(|| file_secret.clone());
        c.push_str(&dovecot(
            "dovecot",
            "imap",
            &imap_addr,
            &secret,
            &opts.upstream_extra,
        ));
        c.push_str(&dovecot(
            "dovecot-pop3",
            "pop3",
            &pop3_addr,
            &file_secret,
            "",
        ));
        c.push_str(&dovecot(
            "dovecot-sieve",
            "managesieve",
            &sieve_addr,
            &secret,
            &opts.upstream_extra,
        ));
        let smtp_port = peers.info["postfix"]["smtp_port"].as_u64().unwrap_or(1);
        c.push_str(&format!(
            "[upstream.postfix]\naddress = \"127.0.0.1:{smtp_port}\"\ntls = \"none\"\nlogin.method = \"xclient\"\nidentity = \"email\"\nconnect-timeout = \"{}\"\n{}\n",
            opts.connect_timeout, opts.upstream_extra
        ));
        c.push_str("[directory.test]\n");
        c.push_str(&opts.directory);
        c.push('\n');
        c.push_str(&opts.extra);
        c
    }

    pub fn start(peers: &Peers, opts: &ProxyOptions) -> Proxy {
        // A port picked by free_port() can be taken by another test's
        // outgoing connection before the proxy binds it: pick again.
        for _ in 0..3 {
            let mut proxy = Self::spawn(peers, opts);
            match proxy.wait_ready() {
                Ok(()) => return proxy,
                Err(log) if log.contains("cannot bind") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("the proxy could not bind its ports three times");
    }

    fn spawn(peers: &Peers, opts: &ProxyOptions) -> Proxy {
        let ports: BTreeMap<String, u16> = LISTENERS
            .iter()
            .map(|l| (l.0.to_string(), free_port()))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, Self::config_text(peers, opts, &ports)).expect("write config");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log file");
        // The proxy says READY=1 (systemd's protocol) once every listener
        // is bound; a test that watches the notifications itself keeps its own.
        let notify = (!opts.env.iter().any(|(k, _)| k == "NOTIFY_SOCKET")).then(|| {
            let path = dir.path().join("notify.sock");
            let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("notify socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            (path, socket)
        });
        let mut command = Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"));
        if let Some((path, _)) = &notify {
            command.env("NOTIFY_SOCKET", path);
        }
        let child = command
            .arg("--config")
            .arg(&config_path)
            .env("OAUTHBEARER_PROXY_LOG", opts.log_level)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the proxy");
        Proxy {
            child,
            ports,
            dir,
            config_path,
            notify: notify.map(|(_, socket)| socket),
        }
    }

    /// Waits for READY=1 on the notification socket (or, for a test that
    /// watches notifications itself, until every port accepts).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let Some(socket) = self.notify.take() else {
            return self.wait_ports(deadline);
        };
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = socket.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    // Dropping the socket: later notifications go nowhere.
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the proxy exited ({status}) at start-up:\n{}",
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("the proxy never said READY=1:\n{}", self.log()));
            }
        }
    }

    fn wait_ports(&mut self, deadline: Instant) -> Result<(), String> {
        for port in self.ports.values() {
            loop {
                if TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!(
                        "the proxy exited ({status}) at start-up:\n{}",
                        self.log()
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the proxy did not listen on {port}:\n{}",
                        self.log()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.ports[listener]
    }

    /// The ports of the standard listeners (to rewrite the configuration).
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.ports
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the proxy process (/proc/PID/fd).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Threads of the proxy process (/proc/PID/task).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the proxy process in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the proxy holds at most `fds` descriptors.
    pub fn wait_fds_at_most(&self, fds: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.fds();
            if now <= fds || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the proxy, by its PID.
    pub fn signal(&self, name: &str) {
        let out = run(Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string()));
        assert!(out.status.success(), "kill -s {name} failed");
    }

    /// Waits (bounded) for the proxy to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the proxy's log contains `needle` (bounded).
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
