//! Prometheus metrics: the process-wide counters (exposition format by the
//! `prometheus-client` crate, OpenMetrics text). [`crate::http`] serves
//! them at `/metrics`.
//!
//! The counters live in one [`Metrics`] reached through [`global`], so the
//! places that count (accept loop, login path, provider and upstream calls)
//! need no extra plumbing. Token-cache figures (hits, misses, stale answers,
//! JWKS fetches) belong to the provider layer: `idp::stats` plugs them in as
//! a `prometheus_client::collector::Collector` through [`Metrics::register_collector`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub listener: String,
    pub mechanism: String,
    /// `ok`, `refused`, `provider-unavailable`, `upstream-unavailable`, `upstream-refused`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectoryLabels {
    pub directory: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    /// `to-upstream` or `to-client`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionEndLabels {
    pub listener: String,
    /// `revoked`, `expired`, `logout`, `kicked`, `unverified`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StandingLabels {
    pub directory: String,
    /// `active`, `refused`, `unreachable`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

type Latency = Family<DirectoryLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub connections: Family<ListenerLabels, Counter>,
    pub logins: Family<LoginLabels, Counter>,
    pub provider_request_seconds: Latency,
    pub provider_errors: Family<DirectoryLabels, Counter>,
    pub upstream_connect_seconds: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub upstream_connect_errors: Family<UpstreamLabels, Counter>,
    pub relayed_bytes: Family<BytesLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub sessions_ended: Family<SessionEndLabels, Counter>,
    pub standing_checks: Family<StandingLabels, Counter>,
    registry: Mutex<Registry>,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            connections_open: Family::default(),
            connections: Family::default(),
            logins: Family::default(),
            provider_request_seconds: Family::new_with_constructor(latency_histogram),
            provider_errors: Family::default(),
            upstream_connect_seconds: Family::new_with_constructor(latency_histogram),
            upstream_connect_errors: Family::default(),
            relayed_bytes: Family::default(),
            reloads: Family::default(),
            sessions_ended: Family::default(),
            standing_checks: Family::default(),
            registry: Mutex::new(Registry::with_prefix("oauthbearer_proxy")),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "connections_open",
                "Client connections open now, per listener",
                m.connections_open.clone(),
            );
            r.register(
                "connections",
                "Client connections accepted, per listener",
                m.connections.clone(),
            );
            r.register(
                "logins",
                "Login attempts by listener, mechanism and result",
                m.logins.clone(),
            );
            r.register(
                "provider_request_seconds",
                "Time the identity provider took to answer a token validation",
                m.provider_request_seconds.clone(),
            );
            r.register(
                "provider_errors",
                "Token validations the provider could not answer (unreachable, timeout, bad answer)",
                m.provider_errors.clone(),
            );
            r.register(
                "upstream_connect_seconds",
                "Time to open a connection (TCP and TLS) to an upstream",
                m.upstream_connect_seconds.clone(),
            );
            r.register(
                "upstream_connect_errors",
                "Failed connection attempts to an upstream",
                m.upstream_connect_errors.clone(),
            );
            r.register(
                "relayed_bytes",
                "Bytes relayed after login, per listener and direction",
                m.relayed_bytes.clone(),
            );
            r.register(
                "reloads",
                "Configuration reloads (SIGHUP) by result",
                m.reloads.clone(),
            );
            r.register(
                "sessions_ended",
                "Relayed sessions the proxy ended because access ended, by reason",
                m.sessions_ended.clone(),
            );
            r.register(
                "standing_checks",
                "App-password standing checks (a user's refresh token used at the provider), by result",
                m.standing_checks.clone(),
            );
        }
        m
    }

    /// Adds a collector whose metrics are read at each scrape.
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(collector);
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    pub fn login(&self, listener: &str, mechanism: &str, result: &str) {
        self.logins
            .get_or_create(&LoginLabels {
                listener: listener.to_string(),
                mechanism: mechanism.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn standing_check(&self, directory: &str, result: &str) {
        self.standing_checks
            .get_or_create(&StandingLabels {
                directory: directory.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn session_ended(&self, listener: &str, reason: &str) {
        self.sessions_ended
            .get_or_create(&SessionEndLabels {
                listener: listener.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn provider_request(&self, directory: &str, took: Duration, failed: bool) {
        let labels = DirectoryLabels {
            directory: directory.to_string(),
        };
        self.provider_request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.provider_errors.get_or_create(&labels).inc();
        }
    }

    pub fn upstream_connect(&self, upstream: &str, took: Duration, failed: bool) {
        let labels = UpstreamLabels {
            upstream: upstream.to_string(),
        };
        if failed {
            self.upstream_connect_errors.get_or_create(&labels).inc();
        } else {
            self.upstream_connect_seconds
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }

    pub fn relayed(&self, listener: &str, to_upstream: u64, to_client: u64) {
        for (direction, n) in [("to-upstream", to_upstream), ("to-client", to_client)] {
            self.relayed_bytes
                .get_or_create(&BytesLabels {
                    listener: listener.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(n);
        }
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.login("imaps", "OAUTHBEARER", "ok");
        m.relayed("imaps", 10, 20);
        m.provider_request("test", Duration::from_millis(3), true);
        let text = m.render();
        assert!(
            text.contains(
                "oauthbearer_proxy_logins_total{listener=\"imaps\",mechanism=\"OAUTHBEARER\",result=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "oauthbearer_proxy_relayed_bytes_total{listener=\"imaps\",direction=\"to-client\"} 20"
        ));
        assert!(text.contains("oauthbearer_proxy_provider_errors_total{directory=\"test\"} 1"));
        assert!(
            text.contains("oauthbearer_proxy_provider_request_seconds_count{directory=\"test\"} 1")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
