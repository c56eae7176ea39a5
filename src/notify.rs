//! The systemd notification protocol (`sd_notify(3)`), by hand: one
//! datagram per message to the unix socket named by `NOTIFY_SOCKET` (a path,
//! or `@name` for the abstract namespace). Used for `Type=notify`:
//! `READY=1` once every listener is bound, `RELOADING=1` / `STOPPING=1`,
//! `STATUS=` with connection counts, and `WATCHDOG=1` pings when the unit
//! sets `WatchdogSec=`. Outside systemd (no `NOTIFY_SOCKET`) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for, if any.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::connect(&path) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET {path:?} is unusable: {e}");
                None
            }
        }
    }

    fn connect(path: &std::ffi::OsStr) -> std::io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A full queue must never stall the server: drop the message instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, target })
    }

    /// Sends one message of `KEY=value` lines; failures are logged at debug.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.target) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the
/// watchdog is meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        n.send("READY=1\nSTATUS=ok");
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
    }
}
