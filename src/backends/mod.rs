//! Several backends behind one upstream: which one a user's session goes
//! to, whether it is healthy, and what happens when it is not.
//!
//! - [`route`]: the user's home backend from the configuration alone
//!   (`routing.method` = `hash` | `claim` | `map`, and the fallback);
//! - [`hash`]: weighted rendezvous hashing;
//! - [`health`]: active checks and passive marks;
//! - [`metrics`]: per-backend sessions, logins, failures and health;
//! - this file: the run-time [`Group`] (one [`Target`] per backend) and the
//!   login plan: the home backend only, or, for SMTP and `failover = true`
//!   groups, every healthy backend from the user's first choice on.
//!
//! With `failover = false` an IMAP, POP3 or ManageSieve user is never sent
//! anywhere but their home backend: while it is down they get the
//! temporary failure, so no health flap can put one user's sessions on two
//! backends at once.

pub mod hash;
pub mod health;
pub mod metrics;
pub mod route;

pub use route::{route, Route, RouteKey, Unroutable};

use crate::config::{Protocol, Upstream};
use crate::upstream::{self, Target};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An upstream's backends at run time, built once per configuration.
pub struct Group {
    /// The upstream's settings (each backend's own address is in its target).
    pub config: Upstream,
    members: Vec<Member>,
    /// Which configuration built it (the health checks go to the newest).
    generation: u64,
}

struct Member {
    name: String,
    target: Arc<Target>,
    health: Arc<health::State>,
}

/// The backend a login went to, kept for the connection's log line and
/// counted as an open session on it while the session lasts.
#[derive(Debug)]
pub struct Chosen {
    pub name: String,
    _open: Option<metrics::Open>,
}

/// Why no backend can take a login now.
#[derive(Debug)]
pub enum NoBackend {
    Unroutable(Unroutable),
    /// The user's backend is down and the group may not move them.
    Down {
        backend: String,
        user: String,
    },
}

impl Group {
    /// One target per backend. Inside a runtime, starts the health checks
    /// (`protocol`: what the upstream speaks, `None` when no listener
    /// uses it); they end when the group is dropped.
    pub fn new(
        config: Upstream,
        protocol: Option<Protocol>,
    ) -> Result<Arc<Self>, crate::tls::TlsError> {
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let health = config.backends.health;
        let members = config
            .backends
            .list
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let key = (config.name.clone(), b.name.clone(), b.address.clone());
                Ok(Member {
                    name: b.name.clone(),
                    target: Target::new(config.for_backend(i))?,
                    health: health::shared(key, health.is_some(), generation),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let group = Arc::new(Self {
            config,
            members,
            generation,
        });
        for m in &group.members {
            metrics::global().set_up(&group.config.name, &m.name, m.health.is_up());
        }
        if let (Some(health), Some(protocol), Ok(runtime)) =
            (health, protocol, tokio::runtime::Handle::try_current())
        {
            for i in 0..group.members.len() {
                runtime.spawn(health::run(Arc::downgrade(&group), i, protocol, health));
            }
        }
        Ok(group)
    }

    /// A backend to learn the upstream's capabilities from before a login:
    /// the first healthy one.
    pub fn any(&self) -> &Arc<Target> {
        let up = self.members.iter().find(|m| m.health.is_up());
        &up.unwrap_or(&self.members[0]).target
    }

    /// The routing key of a user name a client typed (password logins):
    /// folded as the upstream folds it.
    pub fn user_key(&self, user: &str) -> String {
        self.config
            .identity_case
            .apply(user)
            .unwrap_or_else(|_| user.to_ascii_lowercase())
    }

    /// The name of the claim `routing.method = "claim"` reads, if any.
    pub fn routing_claim(&self) -> Option<&str> {
        match &self.config.backends.routing {
            crate::config::Routing::Claim(c) => Some(c),
            _ => None,
        }
    }

    /// The backends a login of `key` may try, in order.
    pub fn plan(&self, key: RouteKey<'_>, protocol: Protocol) -> Result<Vec<usize>, NoBackend> {
        let backends = &self.config.backends;
        let home = route(backends, key).map_err(NoBackend::Unroutable)?.home;
        if self.members[home].health.is_up() {
            let mut plan = vec![home];
            if self.may_move(protocol) {
                plan.extend(
                    self.others(home, key.user)
                        .filter(|&i| self.members[i].health.is_up()),
                );
            }
            return Ok(plan);
        }
        if !self.may_move(protocol) {
            return Err(NoBackend::Down {
                backend: self.members[home].name.clone(),
                user: key.user.to_string(),
            });
        }
        let healthy: Vec<usize> = self
            .others(home, key.user)
            .filter(|&i| self.members[i].health.is_up())
            .collect();
        if healthy.is_empty() {
            // Every backend is marked down: the marks may be stale, try them.
            return Ok(std::iter::once(home)
                .chain(self.others(home, key.user))
                .collect());
        }
        Ok(healthy)
    }

    /// SMTP sessions may go to any backend; mailbox sessions only with
    /// `failover = true` (shared storage).
    fn may_move(&self, protocol: Protocol) -> bool {
        protocol == Protocol::Smtp || self.config.backends.failover
    }

    /// The backends other than `home`, in the user's rendezvous order.
    fn others<'a>(&'a self, home: usize, user: &str) -> impl Iterator<Item = usize> + 'a {
        hash::order(&self.config.backends.list, user)
            .into_iter()
            .filter(move |&i| i != home)
    }

    /// Runs `login` on the planned backends in turn: the next one is tried
    /// only when a backend could not be reached at all. Every try is
    /// booked in the backend's metrics (`accepted`: whether an answer is a
    /// login, not a refusal) and health.
    pub async fn login<T, F, Fut>(
        &self,
        plan: &[usize],
        accepted: fn(&T) -> bool,
        mut login: F,
    ) -> (Result<T, upstream::Error>, Chosen)
    where
        F: FnMut(Arc<Target>) -> Fut,
        Fut: Future<Output = Result<T, upstream::Error>>,
    {
        for (n, &i) in plan.iter().enumerate() {
            let member = &self.members[i];
            let result = login(member.target.clone()).await;
            let unreachable = matches!(result, Err(upstream::Error::Connect(_)));
            let ok = result.as_ref().is_ok_and(accepted);
            self.booked(member, ok, &result, unreachable);
            if unreachable && n + 1 < plan.len() {
                continue;
            }
            let open = ok.then(|| metrics::global().open_session(&self.config.name, &member.name));
            let chosen = Chosen {
                name: member.name.clone(),
                _open: open,
            };
            return (result, chosen);
        }
        (
            Err(upstream::Error::Connect("no backend to try".into())),
            Chosen {
                name: "-".into(),
                _open: None,
            },
        )
    }

    fn booked<T>(
        &self,
        member: &Member,
        ok: bool,
        result: &Result<T, upstream::Error>,
        unreachable: bool,
    ) {
        let upstream = &self.config.name;
        metrics::global().login(upstream, &member.name, ok);
        if unreachable {
            if let Err(e) = result {
                self.mark(member, false, &e.to_string());
            }
        }
    }

    /// Books an active check of backend `index`.
    fn checked(&self, index: usize, result: Result<(), String>) {
        let Some(member) = self.members.get(index) else {
            return;
        };
        metrics::global().health_check(&self.config.name, &member.name, result.is_ok());
        match result {
            Ok(()) => self.mark(member, true, ""),
            Err(why) => self.mark(member, false, &why),
        }
    }

    /// Books a health verdict (an active check, or a failed connect).
    fn mark(&self, member: &Member, ok: bool, why: &str) {
        let upstream = &self.config.name;
        let name = &member.name;
        if ok && member.health.passed() {
            tracing::warn!(upstream = %upstream, backend = %name, "backend is up again");
        } else if !ok && member.health.failed() {
            tracing::error!(upstream = %upstream, backend = %name, "backend is down: {why}");
        }
        metrics::global().set_up(upstream, name, member.health.is_up());
    }
}

#[cfg(test)]
mod tests;
