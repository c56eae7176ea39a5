//! SMTP's wire syntax for the shared login path: `334 ` challenges, base64
//! answer lines, reply codes as Dovecot's submission-login uses them
//! (RFC 4954, RFC 7628 §4.4).

use super::reply;
use crate::gateway::{Failure, Service};
use crate::login::{Rejected, Wire};

pub struct SmtpWire<'a> {
    pub svc: &'a Service,
}

/// The upstream's reply lines (already in wire form) with CRLFs.
fn lines(upstream: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for line in upstream {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Wire for SmtpWire<'_> {
    fn challenge(&self, base64: &str) -> Vec<u8> {
        format!("334 {base64}\r\n").into_bytes()
    }

    /// After XCLIENT the upstream said nothing the client should see: the
    /// proxy answers 235 itself; a relayed password gets Postfix's reply.
    fn logged_in(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        if upstream.is_empty() {
            return reply::AUTH_SUCCEEDED.as_bytes().to_vec();
        }
        lines(upstream)
    }

    fn password_refused(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        if upstream.is_empty() {
            return reply::INVALID_CREDENTIALS.as_bytes().to_vec();
        }
        lines(upstream)
    }

    fn failed(&self, failure: &Failure) -> Vec<u8> {
        reply::failure(failure).as_bytes().to_vec()
    }

    fn rejected(&self, why: Rejected) -> Vec<u8> {
        match why {
            Rejected::TlsRequired => reply::ENCRYPTION_REQUIRED,
            Rejected::UnknownMechanism | Rejected::PasswordsDisabled => {
                reply::UNSUPPORTED_MECHANISM
            }
            Rejected::Cancelled => reply::AUTH_CANCELLED,
            Rejected::NotBase64 => reply::INVALID_BASE64,
            Rejected::TooLong => reply::RESPONSE_TOO_LONG,
            Rejected::MalformedCredentials => reply::INVALID_PLAIN,
        }
        .as_bytes()
        .to_vec()
    }

    fn too_many_failures(&self) -> Vec<u8> {
        reply::too_many_failures(self.svc).into_bytes()
    }

    fn timed_out(&self) -> Vec<u8> {
        reply::timeout(self.svc).into_bytes()
    }
}
