//! Backend health: an active check per backend (connect, and the
//! protocol's greeting within `health.timeout`, every `health.interval`
//! ±20 %), and passive marks (a login that could not connect).
//!
//! A backend goes down on one failed check or one failed connect, and
//! comes back after two checks in a row pass: a backend that flaps stays
//! down rather than moving users back and forth. Only groups with health
//! checks are ever marked down (nothing else would bring them back).
//!
//! A backend's health outlives a reload: the groups of successive
//! configurations share it (by upstream, backend name and address), so a
//! backend that is down stays down, and only the newest group checks it.

use super::Group;
use crate::config::{Health, Protocol};
use crate::upstream::Target;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Checks in a row that bring a down backend back.
const RISE: u32 = 2;

/// One backend's health.
#[derive(Debug)]
pub struct State {
    up: AtomicBool,
    passes: AtomicU32,
    /// Whether this backend is checked at all.
    checked: bool,
    /// The group whose checker checks it (the newest configuration's).
    pub(super) checker: AtomicU64,
}

type Key = (String, String, String);

/// The health of a backend, shared with the previous configuration's
/// group when it had the same backend, checked too. `generation`: the new
/// group's, which takes the checks over.
pub fn shared(key: Key, checked: bool, generation: u64) -> Arc<State> {
    if !checked {
        return Arc::new(State::new(false));
    }
    static LIVE: OnceLock<Mutex<BTreeMap<Key, Weak<State>>>> = OnceLock::new();
    let mut live = LIVE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    live.retain(|_, w| w.strong_count() > 0);
    let state = live
        .get(&key)
        .and_then(Weak::upgrade)
        .unwrap_or_else(|| Arc::new(State::new(true)));
    state.checker.store(generation, Ordering::Relaxed);
    live.insert(key, Arc::downgrade(&state));
    state
}

impl State {
    pub fn new(checked: bool) -> Self {
        Self {
            up: AtomicBool::new(true),
            passes: AtomicU32::new(0),
            checked,
            checker: AtomicU64::new(0),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A failed check or connect; true when this takes the backend down.
    pub fn failed(&self) -> bool {
        self.passes.store(0, Ordering::Relaxed);
        self.checked && self.up.swap(false, Ordering::Relaxed)
    }

    /// A passed check; true when this brings the backend back.
    pub fn passed(&self) -> bool {
        if self.is_up() {
            return false;
        }
        let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
        passes >= RISE && !self.up.swap(true, Ordering::Relaxed)
    }
}

/// Checks backend `index` of the group until the group is dropped or a
/// newer configuration's group took the backend over.
pub async fn run(group: Weak<Group>, index: usize, protocol: Protocol, health: Health) {
    // The first check soon after start, spread so backends are not all
    // probed at once.
    let mut wait = jittered(health.interval / 5);
    loop {
        tokio::time::sleep(wait).await;
        wait = jittered(health.interval);
        let Some(group) = group.upgrade() else {
            return;
        };
        let Some(member) = group.members.get(index) else {
            return;
        };
        if member.health.checker.load(Ordering::Relaxed) != group.generation {
            return;
        }
        let target = member.target.clone();
        let result = probe(&target, protocol, health.timeout).await;
        group.checked(index, result);
    }
}

/// `interval` ±20 %, from the standard library's per-process random keys.
fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    interval.mul_f64(0.8 + 0.4 * (r as f64 / u64::MAX as f64))
}

/// Connects and reads the greeting, then says goodbye.
pub async fn probe(target: &Target, protocol: Protocol, timeout: Duration) -> Result<(), String> {
    let check = async {
        let mut stream = target.open(None).await.map_err(|e| e.to_string())?;
        let line = first_line(&mut stream).await?;
        greeting(protocol, &line)?;
        let _ = stream.write_all(farewell(protocol)).await;
        let _ = stream.shutdown().await;
        Ok(())
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no greeting within {timeout:?}")))
}

async fn first_line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the greeting: {e}"))?;
        if n == 0 {
            return Err("closed before its greeting".into());
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > 4096 {
            break;
        }
    }
    Ok(line)
}

/// Whether the first line is the protocol's ready greeting.
pub fn greeting(protocol: Protocol, line: &[u8]) -> Result<(), String> {
    let ok = match protocol {
        Protocol::Imap => line.starts_with(b"* OK"),
        Protocol::Smtp => line.starts_with(b"220"),
        Protocol::Pop3 => line.starts_with(b"+OK"),
        // Capability lines ("IMPLEMENTATION" ...), then OK.
        Protocol::ManageSieve => line.starts_with(b"\"") || line.starts_with(b"OK"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not a ready greeting: {}",
            crate::upstream::printable(line)
        ))
    }
}

fn farewell(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Imap => b"h LOGOUT\r\n",
        Protocol::Smtp | Protocol::Pop3 => b"QUIT\r\n",
        Protocol::ManageSieve => b"LOGOUT\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_at_once_up_after_two_passes() {
        let s = State::new(true);
        assert!(s.is_up());
        assert!(!s.passed());
        assert!(s.failed());
        assert!(!s.failed());
        assert!(!s.passed());
        assert!(!s.is_up());
        assert!(s.passed());
        assert!(s.is_up());
        // A pass, a failure, a pass: still down.
        s.failed();
        s.passed();
        s.failed();
        assert!(!s.passed());
        assert!(!s.is_up());
    }

    #[test]
    fn unchecked_is_never_down() {
        let s = State::new(false);
        assert!(!s.failed());
        assert!(s.is_up());
    }

    #[test]
    fn greetings() {
        assert!(greeting(Protocol::Imap, b"* OK [CAPABILITY IMAP4rev1] ready\r\n").is_ok());
        assert!(greeting(Protocol::Imap, b"* BYE too many\r\n").is_err());
        assert!(greeting(Protocol::Smtp, b"220 mx ESMTP\r\n").is_ok());
        assert!(greeting(Protocol::Smtp, b"421 busy\r\n").is_err());
        assert!(greeting(Protocol::Pop3, b"+OK ready\r\n").is_ok());
        assert!(greeting(Protocol::ManageSieve, b"\"IMPLEMENTATION\" \"Dovecot\"\r\n").is_ok());
        assert!(greeting(Protocol::ManageSieve, b"NO \"down\"\r\n").is_err());
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(5));
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
    }
}
