//! Per-backend metrics: whether each backend is up, its open sessions,
//! its logins and its health checks, labelled by upstream and backend.
//! The families outlive reloads (a backend's counters keep counting), and
//! reach the process metrics through one collector.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub upstream: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendResultLabels {
    pub upstream: String,
    pub backend: String,
    /// `ok` or `failed`.
    pub result: String,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub up: Family<BackendLabels, Gauge>,
    pub sessions_open: Family<BackendLabels, Gauge>,
    pub logins: Family<BackendResultLabels, Counter>,
    pub health_checks: Family<BackendResultLabels, Counter>,
}

/// The process's backend metrics (registered on first use).
pub fn global() -> &'static Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = Arc::new(Metrics::default());
        crate::metrics::global().register_collector(Box::new(Collector(m.clone())));
        m
    })
}

fn labels(upstream: &str, backend: &str) -> BackendLabels {
    BackendLabels {
        upstream: upstream.to_string(),
        backend: backend.to_string(),
    }
}

fn result(upstream: &str, backend: &str, ok: bool) -> BackendResultLabels {
    BackendResultLabels {
        upstream: upstream.to_string(),
        backend: backend.to_string(),
        result: if ok { "ok" } else { "failed" }.to_string(),
    }
}

impl Metrics {
    pub fn set_up(&self, upstream: &str, backend: &str, up: bool) {
        self.up
            .get_or_create(&labels(upstream, backend))
            .set(i64::from(up));
    }

    pub fn login(&self, upstream: &str, backend: &str, ok: bool) {
        self.logins
            .get_or_create(&result(upstream, backend, ok))
            .inc();
    }

    pub fn health_check(&self, upstream: &str, backend: &str, ok: bool) {
        self.health_checks
            .get_or_create(&result(upstream, backend, ok))
            .inc();
    }

    /// Counts a session open on the backend until the mark is dropped.
    pub fn open_session(&self, upstream: &str, backend: &str) -> Open {
        let gauge = self
            .sessions_open
            .get_or_create(&labels(upstream, backend))
            .clone();
        gauge.inc();
        Open(gauge)
    }
}

/// One open session on a backend (the gauge goes down when it is dropped).
#[derive(Debug)]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug)]
struct Collector(Arc<Metrics>);

impl prometheus_client::collector::Collector for Collector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let series: [(&str, &str, &dyn EncodeMetric); 4] = [
            (
                "backend_up",
                "Whether the backend passes its health checks (1) or not (0)",
                &m.up,
            ),
            (
                "backend_sessions_open",
                "Sessions relayed to the backend now",
                &m.sessions_open,
            ),
            (
                "backend_logins",
                "Logins on the backend by result",
                &m.logins,
            ),
            (
                "backend_health_checks",
                "Active health checks of the backend by result",
                &m.health_checks,
            ),
        ];
        for (name, help, metric) in series {
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)?;
        }
        Ok(())
    }
}
