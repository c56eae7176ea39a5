//! The session threads.

use super::connection::accept_loop;
use super::sessions::Sessions;
use crate::gateway::Service;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The threads that run sessions: one single-threaded event loop each, as
/// nginx's worker processes. Every worker accepts on its own registration
/// of each listening socket, so a session stays on the thread that
/// accepted it, with no hand-over and no work stealing between threads
/// (measured in docs/benchmarks.md). The main runtime keeps signals,
/// reloads, metrics and the directories' background refreshes.
pub(super) struct Workers {
    pub(super) handles: Vec<tokio::runtime::Handle>,
}

impl Workers {
    pub(super) fn start(n: usize) -> Result<Workers, String> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start session worker {i}: {e}"))?;
            handles.push(runtime.handle().clone());
            // Runs its tasks until the process ends.
            std::thread::Builder::new()
                .name(format!("session-{i}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("cannot start session worker {i}: {e}"))?;
        }
        Ok(Workers { handles })
    }

    /// One accept loop per worker on `socket`, each with its own
    /// registration of the same listening socket.
    pub(super) fn accept(
        &self,
        socket: TcpListener,
        service: watch::Receiver<Arc<Service>>,
        sessions: &Arc<Sessions>,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let socket = socket.into_std()?;
        // Every descriptor first: a failure leaves no loop running.
        let own = (0..self.handles.len())
            .map(|_| socket.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(self
            .handles
            .iter()
            .zip(own)
            .map(|(handle, own)| {
                let (service, sessions) = (service.clone(), sessions.clone());
                handle.spawn(async move {
                    match TcpListener::from_std(own) {
                        Ok(listener) => accept_loop(service, listener, sessions).await,
                        Err(e) => tracing::error!("cannot register a listening socket: {e}"),
                    }
                })
            })
            .collect())
    }
}
