//! POP3's wire syntax for the shared login path: `+ ` challenges and base64
//! answer lines (RFC 5034 §4), `+OK` / `-ERR` replies with RFC 3206 codes.

use super::reply;
use crate::client::Client;
use crate::gateway::Failure;
use crate::login::{wire::base64_line, Rejected, Response, Wire};
use std::future::Future;

pub struct Pop3Wire;

/// The upstream's reply lines as they are, each with CRLF; `otherwise`
/// when it gave none.
fn lines_or(lines: &[Vec<u8>], otherwise: &str) -> Vec<u8> {
    if lines.is_empty() {
        return otherwise.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Wire for Pop3Wire {
    fn challenge(&self, base64: &str) -> Vec<u8> {
        format!("+ {base64}\r\n").into_bytes()
    }

    fn read_response<'a>(
        &'a self,
        client: &'a mut Client,
    ) -> impl Future<Output = Response> + Send + 'a {
        base64_line(client)
    }

    fn logged_in(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        lines_or(upstream, "+OK Logged in.\r\n")
    }

    fn password_refused(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        lines_or(upstream, reply::AUTH_FAILED)
    }

    fn failed(&self, failure: &Failure) -> Vec<u8> {
        reply::failure(failure).as_bytes().to_vec()
    }

    fn rejected(&self, why: Rejected) -> Vec<u8> {
        match why {
            Rejected::TlsRequired => reply::PRIVACY_REQUIRED,
            Rejected::UnknownMechanism => "-ERR Unsupported authentication mechanism.\r\n",
            Rejected::PasswordsDisabled => {
                "-ERR [AUTH] Password logins are disabled here; use OAuth (AUTH OAUTHBEARER).\r\n"
            }
            Rejected::Cancelled => "-ERR Authentication aborted by client.\r\n",
            Rejected::NotBase64 => "-ERR Invalid base64 data in authentication response.\r\n",
            Rejected::TooLong => "-ERR Authentication response too long.\r\n",
            Rejected::MalformedCredentials => "-ERR [AUTH] Invalid PLAIN or LOGIN credentials.\r\n",
        }
        .as_bytes()
        .to_vec()
    }

    fn too_many_failures(&self) -> Vec<u8> {
        reply::TOO_MANY_FAILURES.as_bytes().to_vec()
    }

    fn timed_out(&self) -> Vec<u8> {
        reply::IDLE_FAREWELL.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_lines_are_relayed_as_they_are() {
        let w = Pop3Wire;
        assert_eq!(
            w.logged_in(&[b"+OK Logged in.".to_vec()]),
            b"+OK Logged in.\r\n"
        );
        assert_eq!(w.logged_in(&[]), b"+OK Logged in.\r\n");
        assert_eq!(
            w.password_refused(&[b"-ERR [AUTH] Authentication failed.".to_vec()]),
            b"-ERR [AUTH] Authentication failed.\r\n"
        );
        assert_eq!(w.password_refused(&[]), reply::AUTH_FAILED.as_bytes());
        assert_eq!(w.challenge(""), b"+ \r\n");
        assert_eq!(w.challenge("eyJ9"), b"+ eyJ9\r\n");
    }
}
