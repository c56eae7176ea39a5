//! The registry of live relayed sessions.
//!
//! One short mutex-held map update at login and at the end of a session;
//! listing and ending walk the map. Sessions that share a token form one
//! group, re-validated once per interval however many sessions use it.

use super::grant::{fingerprint, Grant};
use super::recent::{Mark, Recent};
use super::{revalidate, Reason};
pub use crate::relay::Traffic;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// What `who` shows about a session (never a credential).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub id: u64,
    pub user: String,
    pub protocol: String,
    pub listener: String,
    pub client: SocketAddr,
    /// `token`, `password-token` or `passthrough`.
    pub how: String,
    pub mechanism: String,
    /// The backend the session went to (an upstream with several backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The first 12 hex digits of the credential's SHA-256 (tokens), or
    /// the app password's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The token's `exp`, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// When the session logged in, seconds since the epoch.
    pub since: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
}

/// Which sessions to end or list.
#[derive(Debug, Clone)]
pub enum Selector {
    All,
    Id(u64),
    User(String),
    Sub(String),
    Ip(IpAddr),
    /// Sessions using the token with this key.
    Token([u8; 32]),
    /// Sessions that logged in with one of these app passwords (by id).
    AppPasswords(Vec<String>),
    /// A user's sessions that logged in with an app password.
    AppPasswordUser(String),
    /// A back-channel logout of `directory`: sessions of `sid`, or of
    /// `sub` (a session whose token names another `sid` is not ended by a
    /// logout of a different `sid`).
    Logout {
        directory: String,
        sub: Option<String>,
        sid: Option<String>,
    },
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        match self {
            Selector::All => true,
            Selector::Id(id) => info.id == *id,
            Selector::User(u) => info.user.eq_ignore_ascii_case(u),
            Selector::Sub(s) => info.sub.as_deref() == Some(s),
            Selector::Ip(ip) => info.client.ip() == *ip,
            Selector::Token(_) => false,
            Selector::AppPasswords(ids) => {
                info.how == "app-password"
                    && info.credential.as_ref().is_some_and(|c| ids.contains(c))
            }
            Selector::AppPasswordUser(u) => {
                info.how == "app-password" && info.user.eq_ignore_ascii_case(u)
            }
            Selector::Logout {
                directory,
                sub,
                sid,
            } => {
                if info.directory.as_deref() != Some(directory) {
                    return false;
                }
                match (sid, &info.sid) {
                    (Some(want), Some(have)) => want == have,
                    _ => sub.is_some() && info.sub == *sub,
                }
            }
        }
    }
}

struct Live {
    info: Info,
    traffic: Arc<Traffic>,
    stop: Option<oneshot::Sender<Reason>>,
    group: Option<[u8; 32]>,
}

/// Sessions sharing one token, and their re-validation task.
struct Group {
    members: usize,
    task: Option<AbortHandle>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<u64, Live>,
    groups: HashMap<[u8; 32], Group>,
    recent: Recent,
}

/// The live sessions of the whole process (all listeners, across reloads).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

/// A registered session: ends when `stop` fires; unregisters when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    pub id: u64,
    pub stop: oneshot::Receiver<Reason>,
    pub traffic: Arc<Traffic>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(self.id);
    }
}

/// What a new session is, apart from its grant.
pub struct New<'a> {
    pub user: &'a str,
    pub protocol: &'static str,
    pub listener: &'a str,
    pub client: SocketAddr,
    pub mechanism: &'static str,
    pub backend: Option<&'a str>,
    /// When its login attempt began: an end ordered since that names it
    /// ends it as soon as it is registered.
    pub begun: Option<Mark>,
}

impl Registry {
    /// The process's registry: one for all listeners, kept across reloads.
    pub fn shared() -> Arc<Self> {
        static SHARED: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Arc::default).clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the sequence of ends is now: taken when a login attempt
    /// begins, passed to [`Registry::register`] as `New::begun`.
    pub fn mark(&self) -> Mark {
        self.lock().recent.mark()
    }

    /// Registers a session that is about to be relayed; starts its token's
    /// re-validation when it is the token's first session. An end ordered
    /// since the login began that names the session is sent to it at once.
    pub fn register(self: &Arc<Self>, new: New<'_>, grant: &Grant) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let key = grant.token_key();
        let info = Info {
            id,
            user: new.user.to_string(),
            protocol: new.protocol.to_string(),
            listener: new.listener.to_string(),
            client: new.client,
            how: grant.how.name().to_string(),
            mechanism: new.mechanism.to_string(),
            backend: new.backend.map(str::to_string),
            directory: grant.directory().map(str::to_string),
            credential: key
                .as_ref()
                .map(fingerprint)
                .or_else(|| grant.app_password.clone()),
            sub: grant.sub.clone(),
            sid: grant.sid.clone(),
            expires: grant.exp,
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            bytes_to_upstream: 0,
            bytes_to_client: 0,
        };
        let (tx, rx) = oneshot::channel();
        let traffic = Arc::new(Traffic::default());
        let mut inner = self.lock();
        let missed = new.begun.and_then(|since| {
            let live = (&info, key.as_ref());
            inner.recent.after(since, |s| selects(s, live))
        });
        let stop = match missed {
            Some(reason) => {
                tracing::info!(
                    user = %info.user,
                    reason = reason.name(),
                    "session ended as it began: access ended during its login"
                );
                let _ = tx.send(reason);
                None
            }
            None => Some(tx),
        };
        if let Some(k) = key {
            let group = inner.groups.entry(k).or_insert(Group {
                members: 0,
                task: None,
            });
            group.members += 1;
            if group.task.is_none() {
                group.task = revalidate::spawn(self, k, grant);
            }
        }
        inner.live.insert(
            id,
            Live {
                info,
                traffic: traffic.clone(),
                stop,
                group: key,
            },
        );
        drop(inner);
        Registration {
            registry: self.clone(),
            id,
            stop: rx,
            traffic,
        }
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        let Some(live) = inner.live.remove(&id) else {
            return;
        };
        if let Some(k) = live.group {
            if let Some(group) = inner.groups.get_mut(&k) {
                group.members -= 1;
                if group.members == 0 {
                    if let Some(task) = group.task.take() {
                        task.abort();
                    }
                    inner.groups.remove(&k);
                }
            }
        }
    }

    /// The sessions `selector` names, with their byte counts now.
    pub fn list(&self, selector: &Selector) -> Vec<Info> {
        let inner = self.lock();
        let mut out: Vec<Info> = inner
            .live
            .values()
            .filter(|l| selects(selector, (&l.info, l.group.as_ref())))
            .map(|l| {
                let mut info = l.info.clone();
                info.bytes_to_upstream = l.traffic.to_upstream.load(Ordering::Relaxed);
                info.bytes_to_client = l.traffic.to_client.load(Ordering::Relaxed);
                info
            })
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// Ends the sessions `selector` names (each is told `reason` in its
    /// protocol's words by its relay); returns how many.
    pub fn end(&self, selector: &Selector, reason: Reason) -> usize {
        let mut inner = self.lock();
        inner.recent.record(selector, reason);
        let mut ended = 0;
        for live in inner
            .live
            .values_mut()
            .filter(|l| selects(selector, (&l.info, l.group.as_ref())))
        {
            if let Some(stop) = live.stop.take() {
                if stop.send(reason).is_ok() {
                    ended += 1;
                }
            }
        }
        ended
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many distinct tokens open sessions use.
    pub fn tokens(&self) -> usize {
        self.lock().groups.len()
    }
}

/// Whether `selector` names the session `(info, token key)`.
fn selects(selector: &Selector, (info, group): (&Info, Option<&[u8; 32]>)) -> bool {
    match selector {
        Selector::Token(k) => group == Some(k),
        s => s.matches(info),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
