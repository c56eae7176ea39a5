//! What the site remembers between requests, in memory and bounded:
//! sign-ins under way (state → nonce and PKCE verifier, 10 minutes, used
//! once) and signed-in sessions (a random id → the user, 30 minutes).
//! Neither survives a restart: a user then signs in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FLOW_TTL: Duration = Duration::from_secs(600);
pub const SESSION_TTL: Duration = Duration::from_secs(1800);
/// At most this many of each; the oldest goes first.
pub const MAX_ENTRIES: usize = 10_000;

/// A sign-in under way.
#[derive(Clone)]
pub struct Flow {
    pub nonce: String,
    pub verifier: String,
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    /// The upstream user name (what app passwords log in as).
    pub user: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A bounded map whose entries expire.
pub struct Expiring<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T: Clone> Expiring<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, key: String, value: T) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        if map.len() >= MAX_ENTRIES {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key, (now, value));
    }

    /// The value, still valid.
    pub fn get(&self, key: &str) -> Option<T> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Takes the value out (a sign-in's state is used once).
    pub fn take(&self, key: &str) -> Option<T> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v)
    }

    pub fn remove(&self, key: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}
