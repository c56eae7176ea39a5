//! The client side of a transcript: one front-end session driven over a
//! connected loopback TCP pair (the session's `Client` wants a real
//! `ClientStream`), every read bounded by [`TIMEOUT`].

use super::TIMEOUT;
use crate::client::Client;
use crate::gateway::{Outcome, Service};
use crate::stream::MaybeTls;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The client address the session believes it serves (passed on upstream
/// in `ID` and `XCLIENT`).
pub const PEER: &str = "192.0.2.7:4321";

/// A client connected to one session of the service under test.
pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    session: JoinHandle<Outcome>,
}

impl Conn {
    /// Starts the listener's front-end session (as `server::handle` does,
    /// without TLS or PROXY header) on a fresh connection.
    pub async fn open(svc: Arc<Service>) -> Conn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let (ours, theirs) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (ours, (theirs, _)) = (ours.expect("connect"), theirs.expect("accept"));
        let deadline = tokio::time::Instant::now() + svc.limits.pre_auth_timeout;
        let client = Client::new(
            MaybeTls::Plain(theirs),
            PEER.parse().expect("peer address"),
            address,
            svc.limits.max_line,
            deadline,
        );
        let session = tokio::spawn(async move {
            let frontend = crate::frontend::of(svc.listener.protocol);
            (frontend.serve)(client, &svc).await
        });
        let (r, w) = ours.into_split();
        Conn {
            reader: BufReader::new(r),
            writer: w,
            session,
        }
    }

    /// Sends `line` and CRLF.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(&format!("{line}\r\n")).await;
    }

    /// Sends `bytes` as they are, in one write.
    pub async fn send_raw(&mut self, bytes: &str) {
        let write = self.writer.write_all(bytes.as_bytes());
        tokio::time::timeout(TIMEOUT, write)
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// The next line from the proxy, without its CRLF (which it must have).
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line);
        let n = tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("no line from the proxy in time")
            .expect("read failed");
        assert!(n > 0, "the proxy closed the connection");
        line.strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("line without CRLF: {line:?}"))
            .to_string()
    }

    /// Asserts the next line is exactly `want`.
    pub async fn expect(&mut self, want: &str) {
        assert_eq!(self.line().await, want);
    }

    /// Plays a transcript: `C: <line>` is sent, `S: <line>` must come next
    /// exactly (trailing spaces included); blank lines are skipped.
    pub async fn script(&mut self, transcript: &str) {
        let steps = transcript.lines().map(str::trim_start);
        for step in steps.filter(|l| !l.trim().is_empty()) {
            if let Some(line) = step.strip_prefix("C: ") {
                self.send(line).await;
            } else if let Some(line) = step.strip_prefix("S: ") {
                self.expect(line).await;
            } else {
                panic!("transcript step neither `C: ` nor `S: `: {step:?}");
            }
        }
    }

    /// Asserts the proxy closes the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        let mut rest = String::new();
        let read = self.reader.read_line(&mut rest);
        let n = tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("the proxy did not close the connection in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "expected the end, got {rest:?}");
    }

    /// Hangs up (if the session still runs) and returns how it ended.
    pub async fn outcome(mut self) -> Outcome {
        let _ = self.writer.shutdown().await;
        tokio::time::timeout(TIMEOUT, &mut self.session)
            .await
            .expect("the session did not end in time")
            .expect("the session panicked")
    }
}
