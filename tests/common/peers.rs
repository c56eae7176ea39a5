//! The real peers (Dovecot, Postfix, the OpenID provider), started once per
//! test binary by tests/peers/peers.py and shared by its tests; token
//! minting and the provider's admin API.

use super::{manifest_dir, run};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// peers.py waits up to 60 s per peer and restarts a hung one once.
pub const PEERS_START_TIMEOUT: Duration = Duration::from_secs(200);

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

/// The running peers while holding the gate `G` (shared or exclusive).
pub struct Gated<G> {
    pub peers: &'static Peers,
    _gate: G,
}

pub type PeersRead = Gated<RwLockReadGuard<'static, ()>>;
pub type PeersExclusive = Gated<RwLockWriteGuard<'static, ()>>;

impl<G> std::ops::Deref for Gated<G> {
    type Target = Peers;
    fn deref(&self) -> &Peers {
        self.peers
    }
}

/// The running peers, shared with other tests.
pub fn peers_read() -> PeersRead {
    let gate = GATE.read().unwrap_or_else(|e| e.into_inner());
    Gated {
        peers: PEERS.get_or_init(start_peers),
        _gate: gate,
    }
}

/// The running peers, exclusively (for tests that stop and start peers).
pub fn peers_exclusive() -> PeersExclusive {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    Gated {
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
        self.control_reply(command);
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

/// Directory blocks for the proxy's configuration. The tests' tokens carry
/// "openid email profile"; UserInfo shows `email` for the email scope.
pub fn userinfo_directory(peers: &Peers) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{}\"\nendpoint.method = \"userinfo\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"preferred_username\"\nfields.full-name = \"name\"\n",
        peers.str(&["oidc", "userinfo"])
    )
}
