//! The upstream's EHLO keywords, learned once and shared by every client
//! of one upstream (the SMTP front-end promises them in its own EHLO
//! reply before any login), refreshed in the background.

use super::smtp::Session;
use super::Target;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a learned EHLO keyword list is used before it is refreshed.
pub const EXTENSIONS_REFRESH: Duration = Duration::from_secs(300);
/// After a failed refresh, when to try again.
const EXTENSIONS_RETRY: Duration = Duration::from_secs(30);
/// What is promised when the upstream has never been reachable: keywords
/// every Postfix offers.
pub const DEFAULT_EXTENSIONS: &[&str] = &["PIPELINING", "SIZE", "ENHANCEDSTATUSCODES", "8BITMIME"];

/// The upstream's EHLO keywords as last learned, shared by all clients of
/// one upstream.
#[derive(Default)]
pub struct ExtensionCache {
    pub(super) state: std::sync::Mutex<CacheState>,
    /// Held while fetching, so that one connection at a time does it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub(super) struct CacheState {
    keywords: Option<Arc<Vec<String>>>,
    pub(super) next_refresh: Option<Instant>,
    refreshing: bool,
}

impl ExtensionCache {
    /// The known keywords and whether a refresh is due.
    fn peek(&self) -> (Option<Arc<Vec<String>>>, bool) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = st.next_refresh.is_none_or(|t| Instant::now() >= t);
        (st.keywords.clone(), due)
    }

    /// Claims the background refresh; false when one is already running.
    fn claim_refresh(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !std::mem::replace(&mut st.refreshing, true)
    }

    fn store(&self, fetched: Option<Vec<String>>) -> Option<Arc<Vec<String>>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.refreshing = false;
        let wait = match fetched {
            Some(list) => {
                st.keywords = Some(Arc::new(list));
                EXTENSIONS_REFRESH
            }
            None => EXTENSIONS_RETRY,
        };
        st.next_refresh = Some(Instant::now() + wait);
        st.keywords.clone()
    }
}

fn default_extensions() -> Arc<Vec<String>> {
    Arc::new(DEFAULT_EXTENSIONS.iter().map(|k| k.to_string()).collect())
}

/// The upstream's EHLO keywords (unfiltered; the greeting line excluded).
///
/// The first caller learns them with one connection of its own; later
/// callers get the cached list, refreshed in the background once it is
/// older than [`EXTENSIONS_REFRESH`]. While the upstream has never been
/// reachable, [`DEFAULT_EXTENSIONS`].
pub async fn extensions(target: &Arc<Target>, ehlo_name: &str) -> Arc<Vec<String>> {
    let cache = &target.smtp_extensions;
    match cache.peek() {
        (Some(known), due) => {
            if due && cache.claim_refresh() {
                let target = target.clone();
                let name = ehlo_name.to_string();
                tokio::spawn(async move {
                    let _one = target.smtp_extensions.fetching.lock().await;
                    refresh(&target, &name).await;
                });
            }
            known
        }
        (None, false) => default_extensions(),
        (None, true) => {
            let _one = cache.fetching.lock().await;
            // Someone else may have fetched while we waited.
            match cache.peek() {
                (Some(known), _) => known,
                (None, false) => default_extensions(),
                (None, true) => refresh(target, ehlo_name)
                    .await
                    .unwrap_or_else(default_extensions),
            }
        }
    }
}

async fn refresh(target: &Target, ehlo_name: &str) -> Option<Arc<Vec<String>>> {
    // Bounded like a login: an upstream that accepts but never greets must
    // not hold the client's EHLO (and every client queued behind it).
    let open = super::bounded(target, Session::open(target, None, ehlo_name));
    let fetched = match open.await {
        Ok(s) => {
            let keywords = s.extensions.clone();
            s.quit().await;
            tracing::debug!(upstream = %target.config.name, ?keywords, "learned EHLO keywords");
            Some(keywords)
        }
        Err(e) => {
            tracing::warn!(upstream = %target.config.name, "cannot learn EHLO keywords: {e}");
            None
        }
    };
    target.smtp_extensions.store(fetched)
}
