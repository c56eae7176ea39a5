//! Bounded CRLF line framing over any `AsyncRead`.
//!
//! Two-phase, as in mini-redis: look for a whole line in what is buffered,
//! read more only when there is none. A line longer than the limit is
//! skipped up to its LF and reported as [`Line::TooLong`] so the protocol
//! can answer with a syntax error instead of buffering without bound. Bytes
//! read past the current line stay buffered: [`LineReader::take_buffered`]
//! hands them to the relay (nothing a client pipelined is lost), and
//! [`LineReader::discard_buffered`] drops them after STARTTLS.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its CRLF (or bare LF).
    Data(Vec<u8>),
    /// The line exceeded the limit; its bytes were discarded.
    TooLong,
    /// The peer closed the connection before a complete line.
    Eof,
}

pub struct LineReader {
    buf: Vec<u8>,
    /// How far `buf` has been searched for LF already.
    scanned: usize,
    max: usize,
}

impl LineReader {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::with_capacity(1024),
            scanned: 0,
            max,
        }
    }

    /// Reads the next line.
    pub async fn read_line<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<Line> {
        let mut overflowed = false;
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if overflowed || line.len() > self.max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Data(line));
            }
            if self.buf.len() > self.max {
                // Keep memory bounded: forget the over-long line's bytes and
                // keep looking for its end.
                overflowed = true;
                self.buf.clear();
            }
            self.scanned = self.buf.len();
            if self.fill(stream).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal). `None` on EOF.
    pub async fn read_exact<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        n: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        while self.buf.len() < n {
            if self.fill(stream).await? == 0 {
                return Ok(None);
            }
        }
        self.scanned = 0;
        Ok(Some(self.buf.drain(..n).collect()))
    }

    async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let n = match stream.read(&mut self.buf[start..]).await {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        self.buf.truncate(start + n);
        Ok(n)
    }

    /// Whether bytes beyond the last returned line are buffered.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drops everything buffered (plaintext sent behind STARTTLS must never
    /// be interpreted after the TLS handshake).
    pub fn discard_buffered(&mut self) {
        self.buf.clear();
        self.scanned = 0;
    }

    /// Hands over the bytes read past the last line (for the relay).
    /// Without the read chunk's spare capacity: the relay may hold these
    /// bytes for the whole session.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.scanned = 0;
        let mut rest = std::mem::take(&mut self.buf);
        rest.shrink_to_fit();
        rest
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        // Lines handed out were drained from this buffer, but their bytes
        // (tokens, passwords) stay in its spare capacity until overwritten.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> (Vec<Line>, Vec<u8>) {
        let mut r = LineReader::new(max);
        let mut s = input;
        let mut out = Vec::new();
        loop {
            let l = r.read_line(&mut s).await.unwrap();
            let eof = l == Line::Eof;
            out.push(l);
            if eof {
                break;
            }
        }
        (out, r.take_buffered())
    }

    #[tokio::test]
    async fn splits_crlf_and_lf() {
        let (l, _) = lines(b"a1 NOOP\r\na2 CAPABILITY\nrest", 100).await;
        assert_eq!(l[0], Line::Data(b"a1 NOOP".to_vec()));
        assert_eq!(l[1], Line::Data(b"a2 CAPABILITY".to_vec()));
        assert_eq!(l[2], Line::Eof);
    }

    #[tokio::test]
    async fn too_long_line_is_skipped_and_next_line_survives() {
        let mut input = vec![b'x'; 50_000];
        input.extend_from_slice(b"\r\na NOOP\r\n");
        let (l, _) = lines(&input, 1000).await;
        assert_eq!(l[0], Line::TooLong);
        assert_eq!(l[1], Line::Data(b"a NOOP".to_vec()));
    }

    #[tokio::test]
    async fn leftover_is_kept() {
        let mut r = LineReader::new(100);
        let mut s: &[u8] = b"a AUTHENTICATE X\r\nb SELECT INBOX\r\n";
        assert_eq!(
            r.read_line(&mut s).await.unwrap(),
            Line::Data(b"a AUTHENTICATE X".to_vec())
        );
        assert!(r.has_buffered());
        assert_eq!(r.take_buffered(), b"b SELECT INBOX\r\n".to_vec());
    }

    #[tokio::test]
    async fn literal_bytes() {
        let mut r = LineReader::new(100);
        let mut s: &[u8] = b"a LOGIN {5}\r\nalice {3}\r\npw!\r\n";
        assert_eq!(
            r.read_line(&mut s).await.unwrap(),
            Line::Data(b"a LOGIN {5}".to_vec())
        );
        assert_eq!(
            r.read_exact(&mut s, 5).await.unwrap(),
            Some(b"alice".to_vec())
        );
        assert_eq!(
            r.read_line(&mut s).await.unwrap(),
            Line::Data(b" {3}".to_vec())
        );
    }
}
