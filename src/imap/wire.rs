//! IMAP's wire syntax for the shared login path: `+ ` challenges, base64
//! answer lines, tagged replies (RFC 3501 §6.2.2, RFC 7628 §4).

use super::reply;
use crate::gateway::Failure;
use crate::login::{Rejected, Wire};

/// The wire of one command: replies carry its tag.
pub struct ImapWire<'a> {
    pub tag: &'a str,
}

impl ImapWire<'_> {
    fn tagged(&self, text: &str) -> Vec<u8> {
        format!("{} {text}\r\n", self.tag).into_bytes()
    }

    /// The upstream's untagged lines as they are, its tagged line (sent
    /// without a tag) under the client's tag.
    fn upstream_reply(&self, lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let Some((last, untagged)) = lines.split_last() else {
            return self.tagged("NO [UNAVAILABLE] No answer from the mail server.");
        };
        for line in untagged {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(self.tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(last);
        out.extend_from_slice(b"\r\n");
        out
    }
}

impl Wire for ImapWire<'_> {
    fn challenge(&self, base64: &str) -> Vec<u8> {
        format!("+ {base64}\r\n").into_bytes()
    }

    fn logged_in(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        self.upstream_reply(upstream)
    }

    fn password_refused(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        self.upstream_reply(upstream)
    }

    fn failed(&self, failure: &Failure) -> Vec<u8> {
        reply::failure(self.tag, failure).into_bytes()
    }

    fn rejected(&self, why: Rejected) -> Vec<u8> {
        self.tagged(match why {
            Rejected::TlsRequired => reply::PRIVACY_REQUIRED,
            Rejected::UnknownMechanism => "NO Unsupported authentication mechanism.",
            Rejected::PasswordsDisabled => {
                "NO [CANNOT] Password logins are disabled here; use OAuth (AUTHENTICATE OAUTHBEARER)."
            }
            Rejected::Cancelled => "BAD Authentication aborted by client.",
            Rejected::NotBase64 => "BAD Invalid base64 data in authentication response.",
            Rejected::TooLong => "BAD Authentication response too long.",
            Rejected::MalformedCredentials => "BAD Invalid PLAIN or LOGIN credentials.",
        })
    }

    fn too_many_failures(&self) -> Vec<u8> {
        reply::TOO_MANY_FAILURES.as_bytes().to_vec()
    }

    fn timed_out(&self) -> Vec<u8> {
        reply::INACTIVE.as_bytes().to_vec()
    }
}
