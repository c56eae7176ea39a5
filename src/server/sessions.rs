//! Open sessions: counted for graceful stop, systemd's STATUS= and metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(super) fn result_label(result: &str) -> crate::metrics::ResultLabels {
    crate::metrics::ResultLabels {
        result: result.to_string(),
    }
}

/// Counts open sessions, for graceful stop and systemd's STATUS=.
#[derive(Default)]
pub(super) struct Sessions {
    open: AtomicUsize,
    total: AtomicU64,
}

impl Sessions {
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub(super) fn status(&self) -> String {
        format!(
            "{} sessions open, {} since start",
            self.open(),
            self.total.load(Ordering::Relaxed)
        )
    }

    /// Waits (at most `timeout`) until no session is open.
    pub(super) async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.open() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// Held by each connection's task: keeps the counters right however the
/// task ends (including being dropped at shutdown).
pub(super) struct SessionGuard {
    sessions: Arc<Sessions>,
    listener: String,
}

impl SessionGuard {
    pub(super) fn new(sessions: Arc<Sessions>, listener: &str) -> Self {
        sessions.open.fetch_add(1, Ordering::Relaxed);
        sessions.total.fetch_add(1, Ordering::Relaxed);
        let m = crate::metrics::global();
        let labels = crate::metrics::ListenerLabels {
            listener: listener.to_string(),
        };
        m.connections.get_or_create(&labels).inc();
        m.connections_open.get_or_create(&labels).inc();
        Self {
            sessions,
            listener: listener.to_string(),
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.open.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::global()
            .connections_open
            .get_or_create(&crate::metrics::ListenerLabels {
                listener: std::mem::take(&mut self.listener),
            })
            .dec();
    }
}
