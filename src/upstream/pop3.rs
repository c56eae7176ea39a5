//! Logging in to a POP3 upstream (Dovecot's pop3-login).
//!
//! Sequence: the greeting (`+OK`; Dovecot adds `[XCLIENT]` when the proxy
//! is in its `login_trusted_networks`), `STLS` when configured (RFC 2595),
//! then in one write `XCLIENT ADDR= PORT=` with the client's real address
//! (only when the greeting offered it: that is how Dovecot's own proxy
//! passes the address on) and `AUTH PLAIN <initial response>` (RFC 5034):
//! as the master user with authzid = the user, or the client's own
//! credentials (passthrough). Then the XCLIENT answer and the login answer
//! are read: one round trip after the greeting.
//!
//! Refusals are classified by their RFC 3206 / RFC 2449 response codes:
//! `[AUTH]` is the credentials' fault, `[SYS/TEMP]` and `[IN-USE]` are the
//! upstream's temporary trouble.

use super::{ClientInfo, Error, LoggedIn, Target};
use crate::config::{TlsMode, UpstreamLogin};
use crate::line::{Line, LineReader};
use crate::sasl;
use crate::secret::Secret;
use crate::stream::UpstreamStream;
use tokio::io::AsyncWriteExt;

const MAX_LINE: usize = 8 * 1024;

/// A connected, not yet authenticated upstream POP3 session.
struct Session {
    stream: UpstreamStream,
    reader: LineReader,
    /// The greeting offered `[XCLIENT]`: the upstream trusts us to pass
    /// the client's address on.
    xclient: bool,
}

/// The upstream's answer to `AUTH PLAIN`.
enum Reply {
    Ok(LoggedIn),
    /// The `-ERR` line.
    Err(Vec<u8>),
}

/// A refused password, as the client should see it.
pub struct Refusal {
    /// The upstream's `-ERR` line (no CRLF).
    pub lines: Vec<Vec<u8>>,
    /// The upstream's temporary trouble (`[SYS/TEMP]`, `[IN-USE]`), not
    /// the credentials' fault.
    pub temporary: bool,
}

impl Session {
    /// Connects, reads the greeting and upgrades with STLS when configured.
    async fn open(target: &Target, client: ClientInfo) -> Result<Session, Error> {
        let stream = target.connect(Some(client)).await?;
        let mut s = Session {
            stream,
            reader: LineReader::new(MAX_LINE),
            xclient: false,
        };
        let greeting = s.read_line().await?;
        if !greeting.starts_with(b"+OK") {
            return Err(Error::Protocol(format!(
                "unexpected greeting: {}",
                super::imap::printable(&greeting)
            )));
        }
        s.xclient = offers_xclient(&greeting);
        if target.config.tls == TlsMode::StartTls {
            s.send(&[b"STLS"]).await?;
            let answer = s.read_line().await?;
            if !answer.starts_with(b"+OK") {
                return Err(Error::Tls(format!(
                    "STLS refused: {}",
                    super::imap::printable(&answer)
                )));
            }
            s.reader.discard_buffered();
            s.stream = target.start_tls(s.stream).await?;
        }
        Ok(s)
    }

    /// Writes each command with its CRLF, in one write.
    async fn send(&mut self, commands: &[&[u8]]) -> Result<(), Error> {
        let mut out = Vec::with_capacity(commands.iter().map(|c| c.len() + 2).sum());
        for command in commands {
            out.extend_from_slice(command);
            out.extend_from_slice(b"\r\n");
        }
        let written = self.stream.write_all(&out).await;
        // A command may carry the master secret or a password.
        zeroize::Zeroize::zeroize(&mut out);
        written.map_err(Error::io)?;
        self.stream.flush().await.map_err(Error::io)
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        match self
            .reader
            .read_line(&mut self.stream)
            .await
            .map_err(Error::io)?
        {
            Line::Data(l) => Ok(l),
            Line::TooLong => Err(Error::Protocol("over-long line from upstream".into())),
            Line::Eof => Err(Error::Protocol("upstream closed the connection".into())),
        }
    }

    /// Sends XCLIENT (when offered) and `AUTH PLAIN <initial_response>`
    /// in one write, and returns the upstream's verdict on the login.
    async fn login(
        mut self,
        client: ClientInfo,
        initial_response: &Secret,
    ) -> Result<Reply, Error> {
        let auth = Secret::new(format!("AUTH PLAIN {}", initial_response.expose()));
        if self.xclient {
            let xclient = xclient_command(client);
            self.send(&[xclient.as_bytes(), auth.expose().as_bytes()])
                .await?;
            let answer = self.read_line().await?;
            if !answer.starts_with(b"+OK") {
                return Err(Error::Protocol(format!(
                    "XCLIENT refused: {}",
                    super::imap::printable(&answer)
                )));
            }
        } else {
            self.send(&[auth.expose().as_bytes()]).await?;
        }
        let answer = self.read_line().await?;
        if answer.starts_with(b"+OK") {
            Ok(Reply::Ok(LoggedIn {
                buffered: self.reader.take_buffered(),
                stream: self.stream,
                untagged: Vec::new(),
                tagged_text: answer,
            }))
        } else if answer.starts_with(b"-ERR") {
            Ok(Reply::Err(answer))
        } else {
            // A `+ ` continuation: we sent a complete initial response, so
            // the upstream wants something we cannot give.
            Err(Error::Protocol(format!(
                "unexpected answer to AUTH: {}",
                super::imap::printable(&answer)
            )))
        }
    }
}

/// Logs in as `user` with the master credentials (SASL PLAIN, authzid = user).
pub async fn master_login(
    target: &Target,
    client: ClientInfo,
    user: &str,
) -> Result<LoggedIn, Error> {
    let UpstreamLogin::MasterUser { username, secret } = &target.config.login else {
        return Err(Error::Protocol(
            "POP3 upstreams log in with login.method = \"master-user\"".into(),
        ));
    };
    let session = Session::open(target, client).await?;
    // Every intermediate copy of the master secret is a Secret: zeroized on drop.
    let plain = Secret::new(format!("{user}\0{username}\0{}", secret.expose()));
    let encoded = Secret::new(sasl::encode(plain.expose().as_bytes()));
    match session.login(client, &encoded).await? {
        Reply::Ok(logged_in) => Ok(logged_in),
        Reply::Err(line) => Err(Error::Refused {
            authorization: refusal_is_authorization(&line),
            reply: super::imap::printable(&line),
        }),
    }
}

/// Password passthrough: the client's own credentials as `AUTH PLAIN`
/// (after XCLIENT with its real address, so Dovecot applies its own
/// failure penalty to the client). `initial_response` is the SASL PLAIN
/// message in base64.
pub async fn password_login(
    target: &Target,
    client: ClientInfo,
    initial_response: &Secret,
) -> Result<Result<LoggedIn, Refusal>, Error> {
    let session = Session::open(target, client).await?;
    match session.login(client, initial_response).await? {
        Reply::Ok(logged_in) => Ok(Ok(logged_in)),
        Reply::Err(line) => Ok(Err(Refusal {
            temporary: is_temporary(&line),
            lines: vec![line],
        })),
    }
}

/// Whether a greeting offers XCLIENT: `+OK [XCLIENT] ...` (Dovecot, to
/// clients in `login_trusted_networks`).
fn offers_xclient(greeting: &[u8]) -> bool {
    response_code(greeting).is_some_and(|code| {
        code.split(|&b| b == b' ')
            .any(|word| word.eq_ignore_ascii_case(b"XCLIENT"))
    })
}

/// The bracketed response code after `+OK ` / `-ERR ` (RFC 2449 section 8).
fn response_code(line: &[u8]) -> Option<&[u8]> {
    let rest = line
        .strip_prefix(b"+OK ")
        .or_else(|| line.strip_prefix(b"-ERR "))?;
    let inner = rest.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    Some(&inner[..end])
}

/// `[SYS/TEMP]` (and its sub-codes) or `[IN-USE]`: try again later.
fn is_temporary(line: &[u8]) -> bool {
    response_code(line).is_some_and(|code| {
        code.eq_ignore_ascii_case(b"IN-USE")
            || code.eq_ignore_ascii_case(b"SYS/TEMP")
            || code
                .get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SYS/TEMP/"))
    })
}

/// A master-user login refused because of the user, not the master
/// credentials: Dovecot answers `-ERR [AUTH] Authorization failed` when
/// the user does not exist (`pass = yes` on the master passdb), and
/// `-ERR [AUTH] Authentication failed.` when the master secret is wrong.
fn refusal_is_authorization(line: &[u8]) -> bool {
    !is_temporary(line)
        && line
            .windows(b"Authorization failed".len())
            .any(|w| w.eq_ignore_ascii_case(b"Authorization failed"))
}

/// `XCLIENT ADDR=<ip> PORT=<port>` as Dovecot's pop3-login reads it (and
/// as Dovecot's own proxy sends it; IPv6 without brackets, an IPv4-mapped
/// address as IPv4).
fn xclient_command(client: ClientInfo) -> String {
    format!(
        "XCLIENT ADDR={} PORT={}",
        client.peer.ip().to_canonical(),
        client.peer.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xclient_offer_is_read_from_the_greeting() {
        assert!(offers_xclient(b"+OK [XCLIENT] Dovecot (Debian) ready."));
        assert!(offers_xclient(b"+OK [xclient] ready"));
        assert!(!offers_xclient(b"+OK Dovecot (Debian) ready."));
        assert!(!offers_xclient(b"+OK XCLIENT ready"));
        assert!(!offers_xclient(b"+OK [XCLIENT"));
    }

    #[test]
    fn refusals_are_classified_by_response_code() {
        let cases: &[(&[u8], bool, bool)] = &[
            // (line, temporary, authorization)
            (b"-ERR [AUTH] Authentication failed.", false, false),
            (b"-ERR [AUTH] Authorization failed", false, true),
            (
                b"-ERR [SYS/TEMP] Temporary authentication failure.",
                true,
                false,
            ),
            (b"-ERR [SYS/TEMP/DISK] full", true, false),
            (b"-ERR [IN-USE] Mailbox locked", true, false),
            (b"-ERR [SYS/PERM] Authorization failed", false, true),
            (b"-ERR Unknown command.", false, false),
            (b"-ERR [SYS/TEMPX] no", false, false),
        ];
        for &(line, temporary, authorization) in cases {
            let text = String::from_utf8_lossy(line);
            assert_eq!(is_temporary(line), temporary, "{text}");
            assert_eq!(refusal_is_authorization(line), authorization, "{text}");
        }
    }

    #[test]
    fn xclient_command_carries_the_client_address() {
        let client = ClientInfo {
            peer: "[2001:db8::7]:4242".parse().unwrap(),
            local: "127.0.0.1:995".parse().unwrap(),
        };
        assert_eq!(
            xclient_command(client),
            "XCLIENT ADDR=2001:db8::7 PORT=4242"
        );
        let mapped = ClientInfo {
            peer: "[::ffff:192.0.2.7]:110".parse().unwrap(),
            ..client
        };
        assert_eq!(xclient_command(mapped), "XCLIENT ADDR=192.0.2.7 PORT=110");
    }

    fn target(address: String) -> std::sync::Arc<Target> {
        use crate::config::{IdentityField, Upstream};
        Target::new(Upstream {
            name: "fake".into(),
            address,
            tls: TlsMode::None,
            tls_ca: None,
            tls_name: "localhost".into(),
            login: UpstreamLogin::MasterUser {
                username: "proxy".into(),
                secret: Secret::new("s3cret"),
            },
            identity: IdentityField::Email,
            connect_timeout: std::time::Duration::from_secs(5),
            proxy_protocol_v2: false,
        })
        .unwrap()
    }

    /// A fake POP3 upstream for one connection: sends `greeting`, then
    /// answers each line with `answer(line)`; returns what it was sent.
    async fn fake(
        greeting: &'static str,
        answer: fn(&str) -> &'static str,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tcp.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(greeting.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = answer(&line);
                seen.push(line);
                if w.write_all(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
            seen
        });
        (address, task)
    }

    fn client() -> ClientInfo {
        ClientInfo {
            peer: "192.0.2.7:4242".parse().unwrap(),
            local: "127.0.0.1:995".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn master_login_passes_the_address_then_authenticates_with_authzid() {
        let (address, seen) = fake("+OK [XCLIENT] ready.\r\n", |line| {
            if line.starts_with("XCLIENT") {
                "+OK Updated\r\n"
            } else {
                "+OK Logged in.\r\n"
            }
        })
        .await;
        let t = target(address);
        let logged_in = master_login(&t, client(), "alice@example.com")
            .await
            .unwrap();
        assert_eq!(logged_in.tagged_text, b"+OK Logged in.".to_vec());
        drop(logged_in);
        let plain = sasl::encode(b"alice@example.com\0proxy\0s3cret");
        assert_eq!(
            seen.await.unwrap(),
            vec![
                "XCLIENT ADDR=192.0.2.7 PORT=4242".to_string(),
                format!("AUTH PLAIN {plain}")
            ]
        );
    }

    #[tokio::test]
    async fn no_xclient_unless_offered_and_refusals_are_classified() {
        let (address, seen) =
            fake("+OK ready.\r\n", |_| "-ERR [AUTH] Authorization failed\r\n").await;
        let t = target(address);
        match master_login(&t, client(), "nobody@example.com").await {
            Err(Error::Refused {
                authorization: true,
                reply,
            }) => assert_eq!(reply, "-ERR [AUTH] Authorization failed"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("logged in"),
        }
        let seen = seen.await.unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("AUTH PLAIN "));
    }

    #[tokio::test]
    async fn password_refusals_carry_the_upstream_line() {
        let (address, _seen) = fake("+OK ready.\r\n", |_| {
            "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"
        })
        .await;
        let t = target(address);
        let ir = Secret::new(sasl::encode(b"\0alice@example.com\0pw"));
        match password_login(&t, client(), &ir).await {
            Ok(Err(refusal)) => {
                assert!(refusal.temporary);
                assert_eq!(
                    refusal.lines,
                    vec![b"-ERR [SYS/TEMP] Temporary authentication failure.".to_vec()]
                );
            }
            _ => panic!("expected a refusal"),
        }
    }

    #[tokio::test]
    async fn a_bad_greeting_is_a_protocol_error() {
        let (address, _seen) = fake("-ERR [SYS/TEMP] busy\r\n", |_| "").await;
        let t = target(address);
        assert!(matches!(
            master_login(&t, client(), "alice@example.com").await,
            Err(Error::Protocol(_))
        ));
    }
}
