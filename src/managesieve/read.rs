//! Reading a client's ManageSieve input: a whole command with its
//! literals, and a SASL response (RFC 5804 §2.1: a quoted string or a
//! literal of base64, `"*"` to cancel). Every read is bounded by
//! `max-line` and the pre-authentication deadline (see [`Client`]).

use super::syntax::{self, Lexer};
use crate::client::{Client, Input};
use zeroize::Zeroizing;

/// What the client sent next.
pub enum Read {
    /// A complete command or response, its literals inline (it may hold a
    /// token or a password).
    Line(Zeroizing<Vec<u8>>),
    /// A line over `max-line`: skipped, the client may go on.
    TooLong,
    /// A literal over `max-line`: its bytes cannot be told from commands,
    /// so the connection must end.
    LiteralTooLong,
    Closed,
    TimedOut,
}

/// Reads one line and the literals it announces. ManageSieve clients send
/// non-synchronizing literals (`{n+}`, RFC 5804 §4 `literal-c2s`); a
/// synchronizing `{n}` is read the same way, since the protocol has no
/// continuation request for it.
pub async fn line(client: &mut Client, max: usize) -> Read {
    let mut full = match client.read_line().await {
        Input::Line(l) => Zeroizing::new(l),
        Input::TooLong => return Read::TooLong,
        Input::Closed => return Read::Closed,
        Input::TimedOut => return Read::TimedOut,
    };
    let mut segment = 0;
    while let Some((n, _)) = syntax::trailing_literal(&full[segment..]) {
        if full.len().saturating_add(n) > max {
            return Read::LiteralTooLong;
        }
        let Some(data) = client.read_exact(n).await else {
            return Read::Closed;
        };
        let data = Zeroizing::new(data);
        full.extend_from_slice(b"\r\n");
        full.extend_from_slice(&data);
        segment = full.len();
        match client.read_line().await {
            Input::Line(rest) => full.extend_from_slice(&Zeroizing::new(rest)),
            Input::TooLong => return Read::LiteralTooLong,
            Input::Closed => return Read::Closed,
            Input::TimedOut => return Read::TimedOut,
        }
    }
    Read::Line(full)
}

/// The client's answer to a server challenge.
pub enum Answer {
    /// The decoded response.
    Data(Zeroizing<Vec<u8>>),
    /// `"*"`: the client cancelled the exchange.
    Cancelled,
    /// Not a single string, or not base64.
    Invalid,
    /// A line over `max-line`.
    TooLong,
    /// A literal over `max-line` (see [`Read::LiteralTooLong`]).
    LiteralTooLong,
    Gone,
}

/// Reads a SASL response: one string (quoted or literal) of base64.
pub async fn sasl_response(client: &mut Client, max: usize) -> Answer {
    match line(client, max).await {
        Read::Line(l) => decode_response(&l),
        Read::TooLong => Answer::TooLong,
        Read::LiteralTooLong => Answer::LiteralTooLong,
        Read::Closed | Read::TimedOut => Answer::Gone,
    }
}

/// A SASL response line → its decoded bytes (pure).
pub fn decode_response(line: &[u8]) -> Answer {
    // IMAP's bare `*` is taken as a cancel too.
    if line.trim_ascii() == b"*" {
        return Answer::Cancelled;
    }
    let mut p = Lexer::new(line);
    let Some(text) = p.string().map(Zeroizing::new) else {
        return Answer::Invalid;
    };
    if !p.at_end() {
        return Answer::Invalid;
    }
    if text.as_slice() == b"*" {
        return Answer::Cancelled;
    }
    match crate::sasl::decode_response(&text) {
        Some(data) => Answer::Data(Zeroizing::new(data)),
        None => Answer::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(line: &[u8]) -> Option<Vec<u8>> {
        match decode_response(line) {
            Answer::Data(d) => Some(d.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn responses() {
        assert_eq!(data(b"\"AQ==\""), Some(vec![1]));
        assert_eq!(data(b"\"\""), Some(Vec::new()));
        assert_eq!(data(b"{4+}\r\nAQ=="), Some(vec![1]));
        assert_eq!(data(b"{4}\r\nAQ=="), Some(vec![1]));
        assert!(matches!(decode_response(b"\"*\""), Answer::Cancelled));
        assert!(matches!(decode_response(b"AQ=="), Answer::Invalid));
        assert!(matches!(decode_response(b""), Answer::Invalid));
        assert!(matches!(
            decode_response(b"\"not base64!\""),
            Answer::Invalid
        ));
        assert!(matches!(
            decode_response(b"\"AQ==\" \"AQ==\""),
            Answer::Invalid
        ));
        assert!(matches!(decode_response(b"*"), Answer::Cancelled));
    }
}
