//! The SQLite store's memory of passwords it found: a repeated login with
//! the same app password skips the database (and the hop to the blocking
//! pool), as a warm token cache skips the provider.
//!
//! Coherent because one process owns a SQLite store: every revocation and
//! standing verdict goes through it and clears the cache. Entries also age
//! out after [`TTL`], bounding what a second process writing the same file
//! (not a supported set-up) could leave stale. Only hits are kept: a
//! password created a moment ago is found at once.

use super::password::Digest32;
use super::Verified;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(30);
/// At most this many entries; the cache is emptied when full.
const MAX: usize = 100_000;

#[derive(Default)]
pub struct Found {
    entries: Mutex<HashMap<Digest32, (Instant, Verified)>>,
}

impl Found {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest32, (Instant, Verified)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, hash: &Digest32) -> Option<Verified> {
        let entries = self.lock();
        let (at, found) = entries.get(hash)?;
        (at.elapsed() < TTL).then(|| found.clone())
    }

    pub fn put(&self, hash: Digest32, found: &Verified) {
        let mut entries = self.lock();
        if entries.len() >= MAX {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), found.clone()));
    }

    /// After a revocation or a standing verdict.
    pub fn clear(&self) {
        self.lock().clear();
    }
}
