//! What a front-end supplies to the shared login path: its wire syntax for
//! challenges, responses and the replies of an attempt.

use crate::client::{Client, Input};
use crate::gateway::Failure;
use std::future::Future;
use zeroize::Zeroizing;

/// The client's answer to a server challenge.
pub enum Response {
    /// The decoded response (it may hold a token or a password).
    Data(Zeroizing<Vec<u8>>),
    /// The client cancelled the exchange (`*`).
    Cancelled,
    /// Not valid base64 (or not a valid string in the protocol's syntax).
    Invalid,
    /// Longer than `max-line`.
    TooLong,
    /// The client went away.
    Gone,
    /// The pre-auth deadline passed while waiting for the answer.
    TimedOut,
}

/// Why an attempt was refused before any credential was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Authentication needs TLS first on this listener.
    TlsRequired,
    /// A mechanism this listener does not offer.
    UnknownMechanism,
    /// The protocol's own password command while passwords are not accepted.
    PasswordsDisabled,
    /// The client answered a challenge with `*`.
    Cancelled,
    /// An initial response or answer that is not base64.
    NotBase64,
    /// An answer longer than `max-line`.
    TooLong,
    /// PLAIN or LOGIN credentials that do not decode (empty user, ...).
    MalformedCredentials,
}

/// A protocol's wire syntax for one authentication attempt. Every method
/// returns the complete bytes to send, CRLF included.
pub trait Wire: Sync {
    /// A server challenge carrying `base64` (possibly empty): IMAP and POP3
    /// `+ <data>`, SMTP `334 <data>`, ManageSieve a string.
    fn challenge(&self, base64: &str) -> Vec<u8>;

    /// Reads the client's answer to a challenge: by default one base64
    /// line ([`base64_line`], IMAP, SMTP, POP3).
    fn read_response<'a>(
        &'a self,
        client: &'a mut Client,
    ) -> impl Future<Output = Response> + Send + 'a {
        base64_line(client)
    }

    /// The reply to a successful login. `upstream` is the upstream's own
    /// success reply, line by line (empty when it gave none to show).
    fn logged_in(&self, upstream: &[Vec<u8>]) -> Vec<u8>;

    /// The reply when the upstream refused a relayed password: its lines.
    fn password_refused(&self, upstream: &[Vec<u8>]) -> Vec<u8>;

    /// The reply to a failed login (after the error challenge, if any).
    fn failed(&self, failure: &Failure) -> Vec<u8>;

    /// The reply to an attempt refused before any credential was checked.
    fn rejected(&self, why: Rejected) -> Vec<u8>;

    /// Sent before closing after `max-auth-failures`.
    fn too_many_failures(&self) -> Vec<u8>;

    /// Sent before closing when the pre-auth deadline passes in the middle
    /// of an exchange (the front-end's own inactivity farewell).
    fn timed_out(&self) -> Vec<u8>;
}

/// Reads one base64 line as the answer to a challenge: `*` cancels, `=` is
/// the empty answer (RFC 4959, RFC 4954, RFC 5034).
pub async fn base64_line(client: &mut Client) -> Response {
    let line = match client.read_line().await {
        Input::Line(l) => Zeroizing::new(l),
        Input::TooLong => return Response::TooLong,
        Input::Closed => return Response::Gone,
        Input::TimedOut => return Response::TimedOut,
    };
    if line.trim_ascii() == b"*" {
        return Response::Cancelled;
    }
    match crate::sasl::decode_response(&line) {
        Some(data) => Response::Data(Zeroizing::new(data)),
        None => Response::Invalid,
    }
}
