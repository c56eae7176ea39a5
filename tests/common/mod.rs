//! Shared end-to-end harness: the real peers (Dovecot, Postfix, the OpenID
//! provider, started once per test binary by tests/peers/peers.py), the
//! proxy binary started with a generated configuration, token minting at
//! the provider, and a raw line client (plaintext or TLS) for transcripts.
//!
//! A test that cannot start its peers fails with the reason; it never skips.
//! peers.py stops everything it started (by PID) when this process exits and
//! its stdin closes.
// Each test binary uses part of the harness.
#![allow(dead_code, unused_imports)]

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

mod mail;
mod peers;
pub mod postgres;
mod proxy;
mod raw;

pub use mail::*;
pub use peers::*;
pub use proxy::*;
pub use raw::*;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
