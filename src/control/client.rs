//! `oauthbearer-proxy who`, `kick` and `app-passwords`: ask the running proxy over its
//! control socket.

use super::{Reply, Request};
use crate::sessions::Info;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request and reads the reply.
pub fn ask(socket: &Path, request: &Request) -> Result<Reply, String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the proxy at {shown}: {e} (is it running, and are you its user or root?)"
        )
    })?;
    let timeout = Some(Duration::from_secs(15));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("{shown}: {e}"))?;
    if answer.is_empty() {
        return Err(format!(
            "{shown}: the proxy closed the connection without answering"
        ));
    }
    serde_json::from_str(&answer).map_err(|e| format!("{shown}: unreadable answer: {e}"))
}

/// `who`'s table: one line per session.
pub fn table(sessions: &[Info], now: u64) -> String {
    let mut out = format!(
        "{:<28} {:<11} {:<22} {:<15} {:<12} {:>9} {:>9} {:>12} {:>12}\n",
        "USER", "PROTOCOL", "CLIENT", "HOW", "BACKEND", "SINCE", "EXPIRES", "IN", "OUT"
    );
    for s in sessions {
        let expires = match s.expires {
            Some(exp) => ago_or_in(exp - now as i64),
            None => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<28} {:<11} {:<22} {:<15} {:<12} {:>9} {:>9} {:>12} {:>12}\n",
            s.user,
            s.protocol,
            s.client.to_string(),
            s.how,
            s.backend.as_deref().unwrap_or("-"),
            ago_or_in(-(now.saturating_sub(s.since) as i64)),
            expires,
            s.bytes_to_upstream,
            s.bytes_to_client,
        ));
    }
    out.push_str(&format!("{} sessions\n", sessions.len()));
    out
}

/// `-5m` for five minutes ago, `12m` for in twelve minutes.
fn ago_or_in(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let body = match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago_or_in(-30), "-30s");
        assert_eq!(ago_or_in(600), "10m");
        assert_eq!(ago_or_in(-7200), "-2h");
        assert_eq!(ago_or_in(3 * 86_400), "3d");
    }
}

/// `app-passwords list`'s table: one line per app password.
pub fn app_password_table(list: &[crate::apppass::AppPassword]) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<20} {:<20} {:<24} {}\n",
        "NAME", "ID", "CREATED", "LAST USED", "FROM", "PROTOCOL"
    );
    for p in list {
        let (at, from, protocol) = match &p.last_used {
            Some(u) => (
                crate::apppass::utc(u.at),
                u.client.as_str(),
                u.protocol.as_str(),
            ),
            None => ("never".to_string(), "-", "-"),
        };
        out.push_str(&format!(
            "{:<24} {:<12} {:<20} {:<20} {:<24} {}\n",
            p.name,
            p.id,
            crate::apppass::utc(p.created),
            at,
            from,
            protocol
        ));
    }
    out.push_str(&format!("{} app passwords\n", list.len()));
    out
}

#[cfg(test)]
mod app_password_tests {
    #[test]
    fn utc_dates() {
        assert_eq!(crate::apppass::utc(0), "1970-01-01 00:00");
        assert_eq!(crate::apppass::utc(1_796_215_380), "2026-12-02 12:43");
    }
}
