//! Counters of one directory's validations: lock-free, read as a
//! [`Snapshot`]. Provider requests are also recorded in the process-wide
//! Prometheus metrics ([`crate::metrics`]) under the directory's name.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
    /// The directory's name for the global metrics (none in unit tests).
    directory: Option<String>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale_serves: AtomicU64,
    provider_requests: AtomicU64,
    provider_errors: AtomicU64,
    provider_latency_micros: AtomicU64,
    jwks_fetches: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Answers served from the cache while fresh.
    pub hits: u64,
    /// Validations the cache could not answer (the token was checked).
    pub misses: u64,
    /// Logins allowed from an expired-but-usable entry during an outage.
    pub stale_serves: u64,
    /// Requests to the provider (userinfo, introspection, discovery, JWKS).
    pub provider_requests: u64,
    /// Provider requests that failed (transport, status, answer).
    pub provider_errors: u64,
    /// Sum of the provider requests' durations.
    pub provider_latency_micros: u64,
    /// JWKS documents fetched (start-up, background, unknown `kid`).
    pub jwks_fetches: u64,
}

impl Stats {
    pub fn for_directory(name: &str) -> Self {
        Self {
            directory: Some(name.to_string()),
            ..Self::default()
        }
    }

    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    pub fn stale_serve(&self) {
        self.stale_serves.fetch_add(1, Relaxed);
    }

    pub fn jwks_fetch(&self) {
        self.jwks_fetches.fetch_add(1, Relaxed);
    }

    /// Records one provider request and how long it took.
    pub fn provider_request(&self, took: Duration, failed: bool) {
        self.provider_requests.fetch_add(1, Relaxed);
        self.provider_latency_micros
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        if failed {
            self.provider_errors.fetch_add(1, Relaxed);
        }
        if let Some(directory) = &self.directory {
            crate::metrics::global().provider_request(directory, took, failed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale_serves: self.stale_serves.load(Relaxed),
            provider_requests: self.provider_requests.load(Relaxed),
            provider_errors: self.provider_errors.load(Relaxed),
            provider_latency_micros: self.provider_latency_micros.load(Relaxed),
            jwks_fetches: self.jwks_fetches.load(Relaxed),
        }
    }
}
