//! `[server]`: host name, TLS files, limits, workers, operations.

use super::*;

#[derive(Debug, Clone)]
pub struct Server {
    pub hostname: String,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub log_json: bool,
    /// How long SIGTERM/SIGINT waits for sessions before closing them.
    pub shutdown_timeout: Duration,
    /// Threads that run sessions, each its own event loop (default: one
    /// per CPU). Takes effect at start.
    pub workers: usize,
    /// The HTTP listener (`[server.http] bind`, or its alias
    /// `[server.metrics] bind`): `/metrics`, `/healthz`, back-channel logout.
    pub http: Option<SocketAddr>,
    /// The local administration socket (`who`, `kick`), if any.
    pub control_socket: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// TLS 1.3 session tickets sent after a full handshake (0: no
    /// resumption). A client that resumes skips the certificate signature.
    pub session_tickets: usize,
}

/// Tickets sent after a full handshake unless configured (rustls's default).
pub const DEFAULT_SESSION_TICKETS: usize = 2;

#[derive(Debug, Clone)]
pub struct Limits {
    pub pre_auth_timeout: Duration,
    pub max_line: usize,
    pub max_auth_failures: u32,
    pub auth_failure_delay: Duration,
    /// After login: no bytes either way for this long ends the session.
    pub idle_timeout: Duration,
    /// Open client connections, in total and from one IP address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pre_auth_timeout: Duration::from_secs(60),
            max_line: 64 * 1024,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(35 * 60),
            max_connections: 20_000,
            max_connections_per_ip: 50,
        }
    }
}

pub(super) fn server(raw: raw::RawServer) -> Result<Server> {
    let hostname = match raw.hostname {
        Some(h) if !h.trim().is_empty() && !h.contains(char::is_whitespace) => h,
        Some(_) => {
            return Err(ConfigError::new(
                "server.hostname",
                "must be a host name without spaces",
            ))
        }
        None => machine_hostname(),
    };
    let tls = match raw.tls {
        None => None,
        Some(t) => Some(TlsFiles {
            cert: PathBuf::from(t.cert),
            key: PathBuf::from(t.key),
            session_tickets: match t.session_tickets {
                None => DEFAULT_SESSION_TICKETS,
                Some(n @ 0..=8) => n as usize,
                Some(_) => {
                    return Err(ConfigError::new(
                        "server.tls.session-tickets",
                        "must be a whole number from 0 (no resumption) to 8",
                    ))
                }
            },
        }),
    };
    let mut limits = Limits::default();
    let l = raw.limits;
    if let Some(v) = l.pre_auth_timeout {
        limits.pre_auth_timeout = duration("server.limits.pre-auth-timeout", &v)?;
    }
    if let Some(v) = l.max_line {
        limits.max_line =
            units::parse_size(&v).map_err(|e| ConfigError::new("server.limits.max-line", e))?;
        if limits.max_line < 1024 {
            return Err(ConfigError::new(
                "server.limits.max-line",
                "must be at least 1KiB",
            ));
        }
    }
    if let Some(v) = l.max_auth_failures {
        if v == 0 {
            return Err(ConfigError::new(
                "server.limits.max-auth-failures",
                "must be at least 1",
            ));
        }
        limits.max_auth_failures = v;
    }
    if let Some(v) = l.auth_failure_delay {
        limits.auth_failure_delay = duration("server.limits.auth-failure-delay", &v)?;
    }
    if let Some(v) = l.idle_timeout {
        limits.idle_timeout = duration("server.limits.idle-timeout", &v)?;
        if limits.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "server.limits.idle-timeout",
                "must be more than 0",
            ));
        }
    }
    for (key, value, slot) in [
        (
            "max-connections",
            l.max_connections,
            &mut limits.max_connections,
        ),
        (
            "max-connections-per-ip",
            l.max_connections_per_ip,
            &mut limits.max_connections_per_ip,
        ),
    ] {
        if let Some(v) = value {
            if v == 0 {
                return Err(ConfigError::new(
                    format!("server.limits.{key}"),
                    "must be at least 1",
                ));
            }
            *slot = v;
        }
    }
    let log_json = match raw.log_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "server.log-format",
                format!("`{other}` is not one of \"text\", \"json\""),
            ))
        }
    };
    let shutdown_timeout = match raw.shutdown_timeout {
        Some(v) => duration("server.shutdown-timeout", &v)?,
        None => Duration::from_secs(30),
    };
    let http = http_bind(raw.http, raw.metrics)?;
    let workers = match raw.workers {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n @ 1..=1024) => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                "server.workers",
                "must be a whole number from 1 to 1024 (leave it out for one per CPU)",
            ))
        }
    };
    let control_socket = match raw.control_socket {
        Some(p) if !p.starts_with('/') => {
            return Err(ConfigError::new(
                "server.control-socket",
                format!("`{p}` is not an absolute path"),
            ))
        }
        p => p.map(PathBuf::from),
    };
    Ok(Server {
        hostname,
        tls,
        limits,
        log_json,
        shutdown_timeout,
        http,
        workers,
        control_socket,
    })
}

/// `[server.http] bind`, or the same address under its older name
/// `[server.metrics] bind`; both set to different addresses is an error.
fn http_bind(
    http: Option<raw::RawHttp>,
    metrics: Option<raw::RawHttp>,
) -> Result<Option<SocketAddr>> {
    let parse = |key: &str, m: raw::RawHttp| {
        m.bind.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                key,
                format!("`{}` is not an address like \"127.0.0.1:9187\"", m.bind),
            )
        })
    };
    let http = http.map(|m| parse("server.http.bind", m)).transpose()?;
    let metrics = metrics
        .map(|m| parse("server.metrics.bind", m))
        .transpose()?;
    match (http, metrics) {
        (Some(a), Some(b)) if a != b => Err(ConfigError::new(
            "server.metrics.bind",
            format!("is an alias of `server.http.bind` but says {b}, not {a}: keep one"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

pub(super) fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
