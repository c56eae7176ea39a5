//! The upstream's Sieve capabilities as last learned, shared by every
//! client of one upstream: learned with one connection of the proxy's own,
//! refreshed in the background, and served from memory so that a greeting
//! costs no upstream connection.
//!
//! Keyed by the upstream's name and address in a process-wide table (a
//! handful of entries), so that a reload that keeps an upstream keeps what
//! was learned about it.

use super::{Session, Target};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long learned capabilities are used before they are refreshed.
const REFRESH: Duration = Duration::from_secs(300);
/// After a failed attempt, when to try again.
const RETRY: Duration = Duration::from_secs(30);
/// The capabilities passed on to clients; the others (`SASL`,
/// `STARTTLS`, `IMPLEMENTATION`, `VERSION`, `XCLIENT`, ...) describe the
/// server the client talks to, which is the proxy.
const PASSED_ON: &[&str] = &["SIEVE", "NOTIFY", "MAXREDIRECTS"];
/// What is advertised while the upstream has never been reachable:
/// Dovecot Pigeonhole's default `sieve_extensions`.
pub const DEFAULT_SIEVE: &str = "fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext";

/// Capabilities as `(NAME, value)` pairs.
pub type Capabilities = Arc<Vec<(String, Option<Vec<u8>>)>>;

#[derive(Default)]
struct Entry {
    known: Option<Capabilities>,
    next_refresh: Option<Instant>,
    /// A background refresh is claimed (at most one at a time).
    refreshing: bool,
}

impl Entry {
    fn due(&self) -> bool {
        self.next_refresh.is_none_or(|t| Instant::now() >= t)
    }
}

#[derive(Default)]
struct Slot {
    state: Mutex<Entry>,
    /// Held while learning, so that one connection at a time does it and
    /// a client that waits for the first answer waits for that one.
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, Entry> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Table = HashMap<(String, String), Arc<Slot>>;

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Default::default);

fn slot(target: &Target) -> Arc<Slot> {
    let key = (target.config.name.clone(), target.config.address.clone());
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    table.entry(key).or_default().clone()
}

fn defaults() -> Capabilities {
    Arc::new(vec![(
        "SIEVE".to_string(),
        Some(DEFAULT_SIEVE.as_bytes().to_vec()),
    )])
}

/// The capabilities to advertise now, without waiting: the learned ones,
/// else [`DEFAULT_SIEVE`]. Starts a background refresh when one is due
/// (inside a tokio runtime).
pub fn capabilities(target: &Arc<Target>) -> Capabilities {
    known_capabilities(target).unwrap_or_else(defaults)
}

/// The capabilities learned so far, if any, without waiting. Starts a
/// background refresh when one is due (inside a tokio runtime): called
/// when a listener starts, it learns them before the first client comes.
pub fn known_capabilities(target: &Arc<Target>) -> Option<Capabilities> {
    let slot = slot(target);
    let mut e = slot.state();
    if e.due() && !e.refreshing {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            e.refreshing = true;
            let target = target.clone();
            let slot = slot.clone();
            runtime.spawn(async move {
                let _one = slot.fetching.lock().await;
                // Someone may have learned them while we waited.
                if slot.state().due() {
                    refresh(&target, &slot).await;
                }
                slot.state().refreshing = false;
            });
        }
    }
    e.known.clone()
}

/// Like [`capabilities`], but while nothing was ever learned, waits for
/// the first attempt to learn them (one upstream connection, bounded by
/// its `connect-timeout`), so that the first client sees the real list too.
pub async fn learned_capabilities(target: &Arc<Target>) -> Capabilities {
    let slot = slot(target);
    if slot.state().known.is_none() {
        let _one = slot.fetching.lock().await;
        // Not after a failed attempt: that retries in the background.
        if slot.state().next_refresh.is_none() {
            refresh(target, &slot).await;
        }
    }
    capabilities(target)
}

/// Learns the capabilities with a connection of the proxy's own (the
/// caller holds `fetching`).
async fn refresh(target: &Target, slot: &Slot) {
    let learn = async {
        let mut session = Session::open(target, None).await?;
        if session.greeting_unread {
            session.greeting().await?;
        }
        let all = std::mem::take(&mut session.capabilities);
        session.logout().await;
        Ok(all)
    };
    let fetched = match super::super::bounded(target, learn).await {
        Ok(all) => {
            let kept: Vec<_> = all
                .into_iter()
                .filter(|(name, _)| PASSED_ON.contains(&name.as_str()))
                .collect();
            tracing::debug!(upstream = %target.config.name, "learned the ManageSieve capabilities");
            Some(Arc::new(kept))
        }
        Err(e) => {
            tracing::warn!(upstream = %target.config.name, "cannot learn the ManageSieve capabilities: {e}");
            None
        }
    };
    let mut e = slot.state();
    let wait = if fetched.is_some() { REFRESH } else { RETRY };
    if fetched.is_some() {
        e.known = fetched;
    }
    e.next_refresh = Some(Instant::now() + wait);
}
