//! Counters of one directory's validations: lock-free, read as a
//! [`Snapshot`]. Provider requests are also recorded in the process-wide
//! Prometheus metrics ([`crate::metrics`]) under the directory's name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
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

/// Publishes every live directory's counters in the process metrics
/// (`oauthbearer_proxy_token_cache_hits_total{directory="…"}` and so on).
/// Validators come and go with reloads, so the one collector reads the
/// live ones through weak references; counters of a directory restart
/// from zero after a reload (a counter reset to Prometheus).
pub fn publish(stats: &Arc<Stats>) {
    static LIVE: OnceLock<Mutex<Vec<Weak<Stats>>>> = OnceLock::new();
    let live = LIVE.get_or_init(|| {
        crate::metrics::global().register_collector(Box::new(Collector(|| {
            LIVE.get()
                .map(|l| {
                    let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                    l.retain(|w| w.strong_count() > 0);
                    l.iter().filter_map(Weak::upgrade).collect()
                })
                .unwrap_or_default()
        })));
        Mutex::new(Vec::new())
    });
    let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
    l.retain(|w| w.strong_count() > 0);
    l.push(Arc::downgrade(stats));
}

struct Collector(fn() -> Vec<Arc<Stats>>);

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("idp::stats::Collector")
    }
}

type Series = (&'static str, &'static str, fn(&Snapshot) -> u64);

const SERIES: &[Series] = &[
    (
        "token_cache_hits",
        "Token validations answered from the cache",
        |s| s.hits,
    ),
    (
        "token_cache_misses",
        "Token validations the cache could not answer",
        |s| s.misses,
    ),
    (
        "token_cache_stale_answers",
        "Logins allowed from a stale cache entry while the provider was unreachable",
        |s| s.stale_serves,
    ),
    (
        "jwks_fetches",
        "JWKS documents fetched (start-up, background refresh, unknown kid)",
        |s| s.jwks_fetches,
    ),
];

impl prometheus_client::collector::Collector for Collector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::MetricType;
        let mut sums: BTreeMap<String, Snapshot> = BTreeMap::new();
        for stats in (self.0)() {
            let Some(name) = &stats.directory else {
                continue;
            };
            let s = stats.snapshot();
            let sum = sums.entry(name.clone()).or_default();
            sum.hits += s.hits;
            sum.misses += s.misses;
            sum.stale_serves += s.stale_serves;
            sum.jwks_fetches += s.jwks_fetches;
        }
        if sums.is_empty() {
            return Ok(());
        }
        for (name, help, value) in SERIES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (directory, snapshot) in &sums {
                let labels = crate::metrics::DirectoryLabels {
                    directory: directory.clone(),
                };
                ConstCounter::new(value(snapshot)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
