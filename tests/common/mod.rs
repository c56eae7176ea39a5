//! Shared end-to-end harness: the real peers (Dovecot, Postfix, the OpenID
//! provider, started once per test binary by tests/peers/peers.py), the
//! proxy binary started with a generated configuration, token minting at
//! the provider, and a raw line client (plaintext or TLS) for transcripts.
//!
//! A test that cannot start its peers fails with the reason; it never skips.
//! peers.py stops everything it started (by PID) when this process exits and
//! its stdin closes.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub mod postgres;

pub const PEERS_START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Peers {
    pub info: Value,
    control: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    _child: Child,
}

static PEERS: OnceLock<Peers> = OnceLock::new();
/// Extra arguments for peers.py (e.g. `--second-dovecot`), set by a test
/// binary before its first `peers_*()` call; all its tests share the peers.
pub static PEERS_ARGS: OnceLock<Vec<&'static str>> = OnceLock::new();
/// Tests that stop a peer take this exclusively; the others share it.
static GATE: RwLock<()> = RwLock::new(());

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start_peers() -> Peers {
    let script = manifest_dir().join("tests/peers/peers.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(PEERS_ARGS.get().map_or(&[][..], Vec::as_slice))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdin = child.stdin.take().expect("stdin piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let r = stdout.read_line(&mut line);
        let _ = tx.send((r.map(|_| line), ()));
        stdout
    });
    let line = match rx.recv_timeout(PEERS_START_TIMEOUT) {
        Ok((Ok(line), ())) => line,
        Ok((Err(e), ())) => panic!("reading peers.py: {e}"),
        Err(_) => {
            let _ = child.kill();
            panic!("peers.py did not report ready within {PEERS_START_TIMEOUT:?}");
        }
    };
    let stdout = reader.join().expect("reader thread");
    let info: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
        panic!(
            "the test peers did not start (peers.py said {:?}; its stderr is above). \
             Install them with `bash scripts/install-deps.sh`.",
            line.trim()
        )
    });
    Peers {
        info,
        control: Mutex::new((stdin, stdout)),
        _child: child,
    }
}

pub struct PeersRead {
    pub peers: &'static Peers,
    _gate: RwLockReadGuard<'static, ()>,
}

impl std::ops::Deref for PeersRead {
    type Target = Peers;
    fn deref(&self) -> &Peers {
        self.peers
    }
}

pub struct PeersExclusive {
    pub peers: &'static Peers,
    _gate: RwLockWriteGuard<'static, ()>,
}

impl std::ops::Deref for PeersExclusive {
    type Target = Peers;
    fn deref(&self) -> &Peers {
        self.peers
    }
}

/// The running peers, shared with other tests.
pub fn peers_read() -> PeersRead {
    let gate = GATE.read().unwrap_or_else(|e| e.into_inner());
    PeersRead {
        peers: PEERS.get_or_init(start_peers),
        _gate: gate,
    }
}

/// The running peers, exclusively (for tests that stop and start peers).
pub fn peers_exclusive() -> PeersExclusive {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    PeersExclusive {
        peers: PEERS.get_or_init(start_peers),
        _gate: gate,
    }
}

impl Peers {
    /// Sends a control line to peers.py and returns its `ok ...` reply.
    pub fn control_reply(&self, command: &str) -> String {
        let mut guard = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let (stdin, stdout) = &mut *guard;
        writeln!(stdin, "{command}").expect("write to peers.py");
        stdin.flush().expect("flush peers.py");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read peers.py reply");
        assert!(
            line.starts_with("ok"),
            "peers.py `{command}` failed: {line}"
        );
        line.trim().to_string()
    }

    /// Sends a control line to peers.py (`stop oidc`, `start dovecot`, ...).
    pub fn control(&self, command: &str) {
        let mut guard = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let (stdin, stdout) = &mut *guard;
        writeln!(stdin, "{command}").expect("write to peers.py");
        stdin.flush().expect("flush peers.py");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read peers.py reply");
        assert!(
            line.starts_with("ok"),
            "peers.py `{command}` failed: {line}"
        );
    }

    pub fn str(&self, path: &[&str]) -> String {
        let mut v = &self.info;
        for p in path {
            v = &v[*p];
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("peers info {path:?} is {other}"),
        }
    }

    pub fn port(&self, path: &[&str]) -> u16 {
        self.str(path).parse().expect("port")
    }

    pub fn ca(&self) -> String {
        self.str(&["certs", "ca"])
    }
}

/// Mints an access token for `sub` at the provider's admin endpoint.
pub fn mint_token(peers: &Peers, sub: &str, scope: &str, ttl: u64) -> String {
    mint_token_format(peers, sub, scope, ttl, "opaque")
}

pub fn mint_token_format(peers: &Peers, sub: &str, scope: &str, ttl: u64, format: &str) -> String {
    mint_token_with(
        peers,
        serde_json::json!({"sub": sub, "scope": scope, "ttl": ttl, "format": format}),
    )
}

/// Mints an access token with any `POST /token` parameters (`client`,
/// `resource`, `jkt`, ...; see provider.mjs).
pub fn mint_token_with(peers: &Peers, body: Value) -> String {
    let v = admin_post(peers, "/token", &body);
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_string()
}

/// An OpenID ID token issued by the provider to `mail-client` (no `typ`
/// header), with `nonce` and `at_hash` when given.
pub fn mint_id_token(peers: &Peers, sub: &str, nonce: Option<&str>, at: Option<&str>) -> String {
    let body = serde_json::json!({"sub": sub, "nonce": nonce, "access_token": at});
    let v = admin_post(peers, "/id-token", &body);
    v["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token in {v}"))
        .to_string()
}

/// A JSON `POST` to the provider's admin API (curl bounds the time).
pub fn admin_post(peers: &Peers, path: &str, body: &Value) -> Value {
    let admin = peers.str(&["oidc", "admin"]);
    let body = body.to_string();
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(&body)
        .arg(format!("{admin}{path}")));
    assert!(
        out.status.success(),
        "admin {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("admin {path}: {out:?}"))
}

/// Provider request counters (`GET /stats` on the admin port).
pub fn provider_stats(peers: &Peers) -> Value {
    let admin = peers.str(&["oidc", "admin"]);
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("{admin}/stats")));
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

/// Runs a command and returns its output (the command bounds its own time).
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A free loopback port, never one this test process was given before:
/// the kernel may hand a just-released port out again, and tests run in
/// parallel, so two listeners could otherwise get the same port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no new free port in 100 tries");
}

/// Directory blocks for the proxy's configuration. The tests' tokens carry
/// "openid email profile"; UserInfo shows `email` for the email scope.
pub fn userinfo_directory(peers: &Peers) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{}\"\nendpoint.method = \"userinfo\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"preferred_username\"\nfields.full-name = \"name\"\n",
        peers.str(&["oidc", "userinfo"])
    )
}

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
        let secret = opts.imap_master_secret.clone().unwrap_or_else(|| {
            format!(
                "%{{file:{}}}%",
                peers.str(&["dovecot", "master_secret_file"])
            )
        });
        c.push_str(&format!(
            "[upstream.dovecot]\naddress = \"{imap_addr}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"{secret}\"\nidentity = \"{}\"\nconnect-timeout = \"{}\"\n{}\n",
            peers.str(&["dovecot", "master_user"]),
            opts.imap_identity,
            opts.connect_timeout,
            opts.upstream_extra,
        ));
        let pop3_addr = opts
            .pop3_upstream
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", peers.port(&["dovecot", "pop3_port"])));
        c.push_str(&format!(
            "[upstream.dovecot-pop3]\nprotocol = \"pop3\"\naddress = \"{pop3_addr}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"%{{file:{}}}%\"\nidentity = \"{}\"\nconnect-timeout = \"{}\"\n\n",
            peers.str(&["dovecot", "master_user"]),
            peers.str(&["dovecot", "master_secret_file"]),
            opts.imap_identity,
            opts.connect_timeout,
        ));
        c.push_str(&format!(
            "[upstream.dovecot-sieve]\nprotocol = \"managesieve\"\naddress = \"127.0.0.1:{}\"\ntls = \"none\"\nlogin.method = \"master-user\"\nlogin.username = \"{}\"\nlogin.secret = \"{secret}\"\nidentity = \"{}\"\nconnect-timeout = \"{}\"\n{}\n",
            peers.port(&["dovecot", "managesieve_port"]),
            peers.str(&["dovecot", "master_user"]),
            opts.imap_identity,
            opts.connect_timeout,
            opts.upstream_extra,
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

/// A line-oriented client for transcript tests, plaintext or TLS.
pub struct Raw {
    stream: RawStream,
    buf: Vec<u8>,
    ca: String,
}

enum RawStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Read for RawStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.read(b),
            RawStream::Tls(s) => s.read(b),
            RawStream::Gone => Ok(0),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.write(b),
            RawStream::Tls(s) => s.write(b),
            RawStream::Gone => Ok(0),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStream::Plain(s) => s.flush(),
            RawStream::Tls(s) => s.flush(),
            RawStream::Gone => Ok(()),
        }
    }
}

pub fn tls_config(ca: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("cert")).expect("add root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl Raw {
    pub fn connect(port: u16, tls: bool, ca: &str) -> Raw {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Self::over(tcp, tls, ca)
    }

    /// Connects from another loopback source address (e.g. 127.0.0.2), to
    /// be another client IP.
    pub fn connect_from(source: &str, port: u16, tls: bool, ca: &str) -> Raw {
        Self::over(tcp_from(source, port), tls, ca)
    }

    pub fn over(tcp: TcpStream, tls: bool, ca: &str) -> Raw {
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut raw = Raw {
            stream: RawStream::Plain(tcp),
            buf: Vec::new(),
            ca: ca.to_string(),
        };
        if tls {
            raw.upgrade();
        }
        raw
    }

    /// Starts TLS on the connection (after STARTTLS was accepted).
    pub fn upgrade(&mut self) {
        self.upgrade_with(tls_config(&self.ca));
    }

    /// Starts TLS with a given client configuration (e.g. one that keeps
    /// the tickets of earlier connections).
    pub fn upgrade_with(&mut self, config: Arc<rustls::ClientConfig>) {
        let RawStream::Plain(tcp) = std::mem::replace(&mut self.stream, RawStream::Gone) else {
            panic!("already TLS")
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(config, name).expect("tls");
        self.stream = RawStream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
    }

    /// How the TLS handshake went (full, or resumed from a ticket).
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        match &self.stream {
            RawStream::Tls(s) => s.conn.handshake_kind(),
            _ => None,
        }
    }

    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// The next line without CRLF; `None` when the server closed.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Some(String::from_utf8_lossy(&l).into_owned());
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn expect_line(&mut self) -> String {
        self.line().expect("server closed the connection")
    }

    /// Reads lines up to and including the first one starting with `prefix`.
    /// Whether nothing arrives for `d` (the connection stays open and
    /// silent); a line or the end of the connection within `d` is `false`.
    pub fn quiet_for(&mut self, d: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let tcp = match &self.stream {
            RawStream::Plain(s) => s,
            RawStream::Tls(s) => s.get_ref(),
            RawStream::Gone => return false,
        };
        tcp.set_read_timeout(Some(d)).expect("timeout");
        let mut chunk = [0u8; 8192];
        let quiet = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let tcp = match &self.stream {
            RawStream::Plain(s) => s,
            RawStream::Tls(s) => s.get_ref(),
            RawStream::Gone => return quiet,
        };
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        quiet
    }

    pub fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("closed before {prefix:?}; got {lines:?}"));
            let done = l.starts_with(prefix);
            lines.push(l);
            if done {
                return lines;
            }
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source`.
pub fn tcp_from(source: &str, port: u16) -> TcpStream {
    tcp_from_with(source, port, None)
}

/// [`tcp_from`] with a receive buffer of `recv_buffer` bytes (a client
/// whose window fills up at once).
pub fn tcp_from_with(source: &str, port: u16, recv_buffer: Option<u32>) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let src: std::net::SocketAddr = format!("{source}:0").parse().expect("source address");
    let dst: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let tcp = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            if let Some(size) = recv_buffer {
                sock.set_recv_buffer_size(size)?;
            }
            sock.bind(src)?;
            sock.connect(dst).await
        })
        .expect("connect from source address");
    let tcp = tcp.into_std().expect("std stream");
    tcp.set_nonblocking(false).expect("blocking");
    tcp
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
}

pub fn oauthbearer(user: Option<&str>, token: &str) -> String {
    let a = user.map(|u| format!("a={u}")).unwrap_or_default();
    b64(format!("n,{a},\x01host=localhost\x01port=993\x01auth=Bearer {token}\x01\x01").as_bytes())
}

pub fn xoauth2(user: &str, token: &str) -> String {
    b64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

pub fn python_client(script: &str) -> PathBuf {
    manifest_dir().join("tests/clients").join(script)
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Starts a TLS handshake with `port` and reads the server's first flight
/// without ever sending the client's Finished; returns the application
/// data that flight carried (half-RTT data: the greeting or banner).
pub fn first_flight_plaintext(port: u16, ca: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(tls_config(ca), name).expect("client");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The ClientHello, and nothing after it.
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    tcp.write_all(&hello).expect("send client hello");
    let mut plaintext = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match conn.read_tls(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("reading the server's flight: {e}"),
        }
        conn.process_new_packets().expect("server flight");
        let mut chunk = [0u8; 4096];
        match conn.reader().read(&mut chunk) {
            Ok(n) => plaintext.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading plaintext: {e}"),
        }
        if plaintext.ends_with(b"\r\n") {
            break;
        }
    }
    plaintext
}

/// Two TLS connections to `port` from one client configuration (which
/// keeps the tickets it receives), each with a `NOOP` answered; how each
/// handshake went (full, or resumed from the first connection's ticket).
pub fn handshake_kinds(port: u16, ca: &str) -> Vec<rustls::HandshakeKind> {
    let config = tls_config(ca);
    (0..2)
        .map(|_| {
            let mut c = Raw::connect(port, false, ca);
            c.upgrade_with(config.clone());
            c.send("a NOOP\r\n");
            c.until("a OK");
            c.handshake_kind().expect("handshake done")
        })
        .collect()
}

/// Raises this process's open-file soft limit to its hard limit (the
/// proxy and the peers inherit it), with util-linux's prlimit.
pub fn raise_fd_limit() {
    let pid = std::process::id().to_string();
    let out = run(std::process::Command::new("prlimit").args([
        "--pid",
        &pid,
        "--nofile",
        "--output",
        "HARD",
        "--noheadings",
    ]));
    let hard = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !hard.is_empty() {
        let _ = run(std::process::Command::new("prlimit").args([
            "--pid",
            &pid,
            &format!("--nofile={hard}:{hard}"),
        ]));
    }
}

/// Python imaplib's own LOGIN through the proxy's `imaps` listener
/// (tests/clients/imap_client.py); its JSON result.
pub fn imaplib_login(peers: &Peers, proxy: &Proxy, user: &str, password: &str) -> Value {
    let out = run(std::process::Command::new("python3")
        .arg(python_client("imap_client.py"))
        .args([
            "--port",
            &proxy.port("imaps").to_string(),
            "--tls",
            "implicit",
            "--ca",
        ])
        .arg(peers.ca())
        .args(["--mech", "LOGIN", "--user", user, "--password", password]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "imap_client.py: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
