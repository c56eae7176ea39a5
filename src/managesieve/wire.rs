//! ManageSieve's wire syntax for the shared login path (RFC 5804 §2.1):
//! challenges and answers are strings of base64 (quoted or literal), the
//! verdict is `OK` / `NO` / `NO (TRYLATER)`, and there are no tags.

use super::read::{self, Answer};
use super::reply;
use crate::client::Client;
use crate::gateway::Failure;
use crate::login::{Rejected, Response, Wire};

/// The wire of a ManageSieve connection; `max` bounds an answer (`max-line`).
pub struct SieveWire {
    pub max: usize,
}

/// The upstream's lines as they are (each already a complete response).
fn lines(upstream: &[Vec<u8>], otherwise: String) -> Vec<u8> {
    if upstream.is_empty() {
        return otherwise.into_bytes();
    }
    let mut out = Vec::with_capacity(128);
    for line in upstream {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Wire for SieveWire {
    fn challenge(&self, base64: &str) -> Vec<u8> {
        let mut out = super::syntax::server_string(base64.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }

    async fn read_response(&self, client: &mut Client) -> Response {
        match read::sasl_response(client, self.max).await {
            Answer::Data(d) => Response::Data(d),
            Answer::Cancelled => Response::Cancelled,
            Answer::Invalid => Response::Invalid,
            Answer::TooLong => Response::TooLong,
            Answer::LiteralTooLong => {
                // Its bytes are on their way and cannot be told from
                // commands: the connection ends.
                let bye = reply::bye("Literal too large.");
                let _ = client.send(bye.as_bytes()).await;
                Response::Gone
            }
            Answer::Gone => Response::Gone,
        }
    }

    fn logged_in(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        lines(upstream, reply::ok("Logged in."))
    }

    fn password_refused(&self, upstream: &[Vec<u8>]) -> Vec<u8> {
        lines(upstream, reply::auth_failed())
    }

    fn failed(&self, failure: &Failure) -> Vec<u8> {
        reply::failure(failure).into_bytes()
    }

    fn rejected(&self, why: Rejected) -> Vec<u8> {
        match why {
            Rejected::TlsRequired => reply::encrypt_needed(),
            Rejected::UnknownMechanism => reply::no("Unsupported authentication mechanism."),
            Rejected::PasswordsDisabled => {
                reply::no("Password logins are disabled here; use OAUTHBEARER.")
            }
            // RFC 5804 §2.1: a cancelled exchange is answered with NO.
            Rejected::Cancelled => reply::no("Authentication aborted by client."),
            Rejected::NotBase64 => reply::no("Invalid base64 data in authentication response."),
            Rejected::TooLong => reply::no("Authentication response too long."),
            Rejected::MalformedCredentials => reply::no("Invalid PLAIN credentials."),
        }
        .into_bytes()
    }

    fn too_many_failures(&self) -> Vec<u8> {
        reply::too_many_failures().into_bytes()
    }

    fn timed_out(&self) -> Vec<u8> {
        reply::bye("Disconnected for inactivity.").into_bytes()
    }
}
