//! Resource limits shared by every listener: open connections in total and
//! per client IP (an RAII [`Admitted`] guard per connection), and the per-IP
//! authentication failure penalty (like Dovecot's auth penalty): every
//! refusal is recorded the moment its verdict is known, whatever the client
//! does next, and an address with recent failures waits a growing delay
//! *before* its next credential is validated, so the delay slows guessing
//! and provider requests alike and hanging up cannot dodge it.
//!
//! Both are bounded in memory whatever clients do: the connection table
//! holds only addresses with an open connection (at most `max-connections`
//! entries), and the penalty table holds at most [`PENALTY_ENTRIES`]
//! addresses, forgetting an address [`PENALTY_WINDOW`] after its last failure.

use crate::config::{Limits, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// How many client addresses the failure penalty remembers at most.
pub const PENALTY_ENTRIES: usize = 100_000;
/// An address's failures are forgotten this long after its last one.
pub const PENALTY_WINDOW: Duration = Duration::from_secs(3600);
/// The delay grows from `auth-failure-delay` up to this (or to
/// `auth-failure-delay` itself if that is larger).
pub const PENALTY_MAX: Duration = Duration::from_secs(15);
/// How long a refused connection on an implicit-TLS listener may take for
/// its handshake before it is simply dropped.
pub const REFUSAL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The listen backlog: connections the kernel completes while the accept
/// loop catches up after a burst (capped by net.core.somaxconn).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket with [`LISTEN_BACKLOG`] (the standard library's
/// default is smaller, and a burst of thousands of clients overflowed it).
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How many over-limit connections are answered at once; beyond that they
/// are closed without a reply, so a flood costs no TLS handshakes.
pub const REFUSALS_IN_FLIGHT: usize = 256;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

impl Refusal {
    /// The protocol's reply before the proxy closes the connection.
    pub fn reply(self, protocol: Protocol, hostname: &str) -> String {
        let what = match self {
            Refusal::Total => "Too many connections",
            Refusal::PerIp => "Too many connections from your address",
        };
        (crate::frontend::of(protocol).over_limit)(hostname, what)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max-connections",
            Refusal::PerIp => "max-connections-per-ip",
        }
    }
}

/// Answers a connection over a limit with the protocol's reply (after the
/// TLS handshake on an implicit-TLS listener, bounded in time) and closes it.
pub async fn refuse(
    svc: &crate::gateway::Service,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    refusal: Refusal,
) {
    use tokio::io::AsyncWriteExt;
    let Ok(_answering) = svc.limiter.refusals.try_acquire() else {
        // Dropping the socket closes it.
        return;
    };
    tracing::warn!(
        listener = %svc.listener.name,
        client = %peer,
        limit = refusal.as_str(),
        "connection refused: over a limit"
    );
    let reply = refusal.reply(svc.listener.protocol, &svc.hostname);
    let send = async {
        match (&svc.tls, svc.listener.tls) {
            (Some(acceptor), crate::config::TlsMode::Implicit) => {
                let mut tls = acceptor.accept(tcp).await?;
                tls.write_all(reply.as_bytes()).await?;
                tls.shutdown().await
            }
            _ => {
                let mut tcp = tcp;
                tcp.write_all(reply.as_bytes()).await?;
                tcp.shutdown().await
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_HANDSHAKE_TIMEOUT, send).await;
}

/// The shared limits of one running proxy.
pub struct Limiter {
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    connections: Mutex<Connections>,
    penalty: Penalty,
    refusals: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            max_total: AtomicUsize::new(limits.max_connections),
            max_per_ip: AtomicUsize::new(limits.max_connections_per_ip),
            connections: Mutex::new(Connections::default()),
            penalty: Penalty::new(limits.auth_failure_delay, PENALTY_ENTRIES),
            refusals: tokio::sync::Semaphore::new(REFUSALS_IN_FLIGHT),
        })
    }

    /// The process's limiter: created on first use, its limits replaced by
    /// `limits` on every later call (a configuration reload), while the
    /// counts of open connections and the penalties carry on.
    pub fn shared(limits: &Limits) -> Arc<Self> {
        static SHARED: OnceLock<Arc<Limiter>> = OnceLock::new();
        let l = SHARED.get_or_init(|| Limiter::new(limits)).clone();
        l.update(limits);
        l
    }

    pub fn update(&self, limits: &Limits) {
        self.max_total
            .store(limits.max_connections, Ordering::Relaxed);
        self.max_per_ip
            .store(limits.max_connections_per_ip, Ordering::Relaxed);
        self.penalty.set_base(limits.auth_failure_delay);
    }

    fn connections(&self) -> MutexGuard<'_, Connections> {
        // The critical sections cannot panic; a poisoned lock still holds
        // consistent counts.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip`, or says which limit it exceeds.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = client_key(ip);
        let mut c = self.connections();
        if c.total >= self.max_total.load(Ordering::Relaxed) {
            return Err(Refusal::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip.load(Ordering::Relaxed) {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(Admitted {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open connections in total and from `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let c = self.connections();
        let from = c.per_ip.get(&client_key(ip)).copied().unwrap_or(0);
        (c.total, from)
    }

    /// Records an authentication failure from `ip` (call it as soon as the
    /// verdict is known, before the client is told).
    pub fn record_failure(&self, ip: IpAddr) {
        self.penalty.failure(client_key(ip), Instant::now());
    }

    /// How long `ip` waits before its next credential is validated: zero
    /// without recent failures, else `auth-failure-delay * 2^(n-1)` for n
    /// recent failures (at most [`PENALTY_MAX`]).
    pub fn penalty(&self, ip: IpAddr) -> Duration {
        self.penalty.owed(client_key(ip), Instant::now())
    }

    /// The constant delay before a failure reply (`auth-failure-delay`).
    pub fn reply_delay(&self) -> Duration {
        self.penalty.base()
    }

    /// A successful login from `ip` clears its penalty (as Dovecot does).
    pub fn login_succeeded(&self, ip: IpAddr) {
        self.penalty.clear(client_key(ip));
    }
}

/// What the per-address limits count: an IPv4 address (also when it
/// arrives IPv4-mapped), or an IPv6 address's /64 prefix, the smallest
/// block a site or a customer line is given, so that a client cannot
/// escape its limits by rotating through the addresses of its own network.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.limiter.connections();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The per-IP failure penalty: the n-th recent failure from an address is
/// delayed `base * 2^(n-1)`, at most `max(base, PENALTY_MAX)`.
pub struct Penalty {
    base_ms: AtomicU64,
    capacity: usize,
    table: Mutex<PenaltyTable>,
}

struct PenaltyTable {
    entries: HashMap<IpAddr, Failures>,
    last_purge: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Penalty {
    pub fn new(base: Duration, capacity: usize) -> Self {
        Self {
            base_ms: AtomicU64::new(base.as_millis() as u64),
            capacity,
            table: Mutex::new(PenaltyTable {
                entries: HashMap::new(),
                last_purge: None,
            }),
        }
    }

    fn base(&self) -> Duration {
        Duration::from_millis(self.base_ms.load(Ordering::Relaxed))
    }

    pub fn set_base(&self, base: Duration) {
        self.base_ms
            .store(base.as_millis() as u64, Ordering::Relaxed);
    }

    /// Records a failure at `now` and returns the delay for it.
    pub fn failure(&self, ip: IpAddr, now: Instant) -> Duration {
        if self.base().is_zero() {
            return Duration::ZERO;
        }
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let count = match t.entries.get_mut(&ip) {
            Some(f) if now.duration_since(f.last) < PENALTY_WINDOW => {
                f.count = f.count.saturating_add(1);
                f.last = now;
                f.count
            }
            Some(f) => {
                *f = Failures {
                    count: 1,
                    last: now,
                };
                1
            }
            None => {
                if t.entries.len() >= self.capacity {
                    t.purge(now);
                }
                // Still full (a flood from many addresses): this address
                // gets the base delay without being remembered.
                if t.entries.len() < self.capacity {
                    t.entries.insert(
                        ip,
                        Failures {
                            count: 1,
                            last: now,
                        },
                    );
                }
                1
            }
        };
        self.delay_for(count)
    }

    /// The delay an address with recent failures owes before its next
    /// attempt (the delay of its last recorded failure); zero otherwise.
    pub fn owed(&self, ip: IpAddr, now: Instant) -> Duration {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match t.entries.get(&ip) {
            Some(f) if now.duration_since(f.last) < PENALTY_WINDOW => self.delay_for(f.count),
            _ => Duration::ZERO,
        }
    }

    fn delay_for(&self, count: u32) -> Duration {
        let base = self.base();
        let max = base.max(PENALTY_MAX);
        let doublings = count.saturating_sub(1).min(16);
        base.saturating_mul(1 << doublings).min(max)
    }

    pub fn clear(&self, ip: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries.remove(&ip);
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PenaltyTable {
    /// Forgets expired addresses; at most once a second so that a full
    /// table under a flood costs one scan a second, not one per failure.
    fn purge(&mut self, now: Instant) {
        if self
            .last_purge
            .is_some_and(|p| now.duration_since(p) < Duration::from_secs(1))
        {
            return;
        }
        self.last_purge = Some(now);
        self.entries
            .retain(|_, f| now.duration_since(f.last) < PENALTY_WINDOW);
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
