//! The one login path both front-ends share: decode the bearer message,
//! validate the token at the provider, check the claimed identity, log in
//! upstream as the resolved user. The front-ends only turn the result into
//! their protocol's replies.

use crate::config::{self, Limits};
use crate::idp::{self, Directories, Rejection};
use crate::sasl::{self, challenge, Mechanism};
use crate::secret::Secret;
use crate::upstream::{self, ClientInfo, LoggedIn, Refusal, Target};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Everything one listener needs at run time, built once per configuration.
pub struct Service {
    pub listener: config::Listener,
    pub hostname: String,
    pub limits: Limits,
    /// The listener's directories, in order.
    pub directories: Directories,
    pub upstream: Arc<Target>,
    pub tls: Option<TlsAcceptor>,
    /// Connection counts and the failure penalty, shared by all listeners.
    pub limiter: Arc<crate::limits::Limiter>,
}

/// How the upstream session is handed over, which differs by protocol.
pub enum Handoff<'a> {
    Imap,
    Smtp { helo: &'a str },
}

/// Why a login did not succeed. Each front-end maps this to its replies in
/// one place.
#[derive(Debug)]
pub enum Failure {
    /// The client's credentials are refused: send the RFC 7628 error
    /// challenge with this status, then fail the authentication.
    Refused {
        status: challenge::Status,
        reason: String,
        /// The directory that refused the token (its index in the
        /// listener's list), whose scope and discovery URL the challenge names.
        directory: Option<usize>,
    },
    /// The provider could not answer: a temporary failure.
    ProviderUnavailable(String),
    /// The upstream could not be reached or failed: a temporary failure.
    UpstreamUnavailable(String),
    /// The upstream refused to let the resolved user in.
    UpstreamRefused(String),
}

impl Failure {
    /// Why, for the log (never a secret, never shown to the client).
    pub fn reason(&self) -> &str {
        match self {
            Failure::Refused { reason, .. } => reason,
            Failure::ProviderUnavailable(w)
            | Failure::UpstreamUnavailable(w)
            | Failure::UpstreamRefused(w) => w,
        }
    }

    /// Logs the failure at the level that fits where it came from.
    pub fn log(&self, client: std::net::SocketAddr, mechanism: Option<&'static str>) {
        let mech = mechanism.unwrap_or("-");
        match self {
            Failure::Refused { reason, .. } => {
                tracing::info!(client = %client, mechanism = mech, "login refused: {reason}")
            }
            Failure::UpstreamRefused(w) => {
                tracing::warn!(client = %client, mechanism = mech, "{w}")
            }
            Failure::ProviderUnavailable(w) | Failure::UpstreamUnavailable(w) => {
                tracing::error!(client = %client, mechanism = mech, "temporary failure: {w}")
            }
        }
    }

    /// Whether this counts towards `max-auth-failures` and is delayed.
    pub fn is_client_fault(&self) -> bool {
        matches!(self, Failure::Refused { .. } | Failure::UpstreamRefused(_))
    }

    /// The `result` label of the `logins` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Failure::Refused { .. } => "refused",
            Failure::ProviderUnavailable(_) => "provider-unavailable",
            Failure::UpstreamUnavailable(_) => "upstream-unavailable",
            Failure::UpstreamRefused(_) => "upstream-refused",
        }
    }
}

pub struct Success {
    pub user: String,
    pub upstream: LoggedIn,
}

impl Service {
    /// The base64 error challenge for a refused bearer login: the hints of
    /// the directory that refused it, else of the listener's first one.
    pub fn challenge(
        &self,
        mech: Mechanism,
        status: challenge::Status,
        directory: Option<usize>,
    ) -> String {
        let hinting = directory
            .and_then(|i| self.directories.get(i))
            .or(self.directories.primary());
        let openid = hinting.and_then(|v| v.openid_configuration());
        let hints = challenge::Hints {
            scope: hinting.and_then(|v| v.required_scope()),
            openid_configuration: openid.as_deref(),
            xoauth2_status: &self.listener.xoauth2_error_status,
        };
        sasl::encode(challenge::error_json(mech, status, &hints).as_bytes())
    }

    /// RFC 7628 §3.2.2 (§4.4 for SMTP): a refused bearer login's error
    /// travels as a challenge behind the protocol's continuation `prefix`
    /// (`"+ "` or `"334 "`); the client answers with a dummy response
    /// (`AQ==`, an empty line) or goes away. Returns whether it is still there.
    pub async fn error_challenge(
        &self,
        client: &mut crate::client::Client,
        prefix: &str,
        mech: Mechanism,
        status: challenge::Status,
        directory: Option<usize>,
    ) -> std::io::Result<bool> {
        let line = format!("{prefix}{}\r\n", self.challenge(mech, status, directory));
        client.send(line.as_bytes()).await?;
        Ok(matches!(
            client.read_line().await,
            crate::client::Input::Line(_) | crate::client::Input::TooLong
        ))
    }

    /// Logs in with a bearer token message; every attempt is counted in
    /// the `logins` metric.
    pub async fn bearer_login(
        &self,
        client: ClientInfo,
        mech: Mechanism,
        message: &[u8],
        handoff: Handoff<'_>,
    ) -> Result<Success, Failure> {
        let result = self.bearer_login_once(client, mech, message, handoff).await;
        let word = match &result {
            Ok(_) => "ok",
            Err(f) => f.metric_label(),
        };
        crate::metrics::global().login(&self.listener.name, mech.name(), word);
        result
    }

    async fn bearer_login_once(
        &self,
        client: ClientInfo,
        mech: Mechanism,
        message: &[u8],
        handoff: Handoff<'_>,
    ) -> Result<Success, Failure> {
        let creds = sasl::decode_bearer(mech, message).map_err(|e| Failure::Refused {
            status: challenge::Status::InvalidRequest,
            reason: format!("malformed {} message: {e}", mech.name()),
            directory: None,
        })?;
        self.token_login(client, creds.authzid.as_deref(), &creds.token, handoff)
            .await
    }

    /// Whether the password of a LOGIN / AUTH PLAIN / AUTH LOGIN is to be
    /// validated as a bearer token (`password-tokens`): a JWT by its shape,
    /// or any password when nothing else may check passwords.
    pub fn password_is_token(&self, password: &[u8]) -> bool {
        self.listener.password_tokens
            && (!self.listener.password_passthrough
                || std::str::from_utf8(password).is_ok_and(idp::jwt::looks_like_jwt))
    }

    /// A login whose password is a bearer token: validated like
    /// OAUTHBEARER, and the given user name must name the token's identity.
    pub async fn password_token_login(
        &self,
        client: ClientInfo,
        username: &str,
        token: &Secret,
        handoff: Handoff<'_>,
    ) -> Result<Success, Failure> {
        self.token_login(client, Some(username), token, handoff)
            .await
    }

    async fn token_login(
        &self,
        client: ClientInfo,
        authzid: Option<&str>,
        token: &Secret,
        handoff: Handoff<'_>,
    ) -> Result<Success, Failure> {
        let need = self.upstream.config.identity;
        let (index, validated) = self.directories.validate(token, need).await;
        let directory = self.directories.name(index);
        let identity = validated.map_err(|e| match e {
            idp::Error::Rejected(r) => Failure::Refused {
                status: match r {
                    Rejection::InvalidToken(_) => challenge::Status::InvalidToken,
                    Rejection::InsufficientScope(_) | Rejection::MissingClaim(_) => {
                        challenge::Status::InsufficientScope
                    }
                },
                reason: format!("directory {directory}: {r}"),
                directory: Some(index),
            },
            idp::Error::Unavailable(why) => {
                Failure::ProviderUnavailable(format!("directory {directory}: {why}"))
            }
        })?;
        if let Some(authzid) = authzid {
            if !identity.matches(authzid) {
                return Err(Failure::Refused {
                    status: challenge::Status::InvalidRequest,
                    reason: format!(
                        "claimed identity {authzid:?} does not match the token's ({})",
                        identity
                            .email
                            .as_deref()
                            .or(identity.username.as_deref())
                            .unwrap_or("?")
                    ),
                    directory: Some(index),
                });
            }
        }
        let user = identity
            .get(need)
            .ok_or_else(|| Failure::Refused {
                status: challenge::Status::InsufficientScope,
                reason: "no identity".into(),
                directory: Some(index),
            })?
            .to_string();
        let login = async {
            match handoff {
                Handoff::Imap => upstream::imap::master_login(&self.upstream, client, &user).await,
                Handoff::Smtp { helo } => {
                    upstream::smtp::login(&self.upstream, client, &user, helo).await
                }
            }
        };
        let logged_in = upstream::bounded(&self.upstream, login).await;
        let name = &self.upstream.config.name;
        match logged_in {
            Ok(upstream) => Ok(Success { user, upstream }),
            Err(upstream::Error::Refused { reply, by }) => Err(match by {
                Refusal::User => {
                    Failure::UpstreamRefused(format!("upstream {name} refused {user}: {reply}"))
                }
                Refusal::Proxy => Failure::UpstreamUnavailable(format!(
                    "upstream {name} refused the proxy's own credentials; check upstream.{name}.login.* and the upstream's trust in the proxy: {reply}"
                )),
                Refusal::Upstream => Failure::UpstreamUnavailable(format!(
                    "upstream {name} refused the login for its own reasons: {reply}"
                )),
            }),
            Err(e) => Err(Failure::UpstreamUnavailable(format!("upstream {name}: {e}"))),
        }
    }
}

/// After a successful login: relays the session and completes the outcome.
pub async fn relay(
    client: &mut crate::client::Client,
    svc: &Service,
    mut up: LoggedIn,
    mut outcome: Outcome,
) -> Outcome {
    svc.limiter.login_succeeded(client.peer.ip());
    let pending = client.take_buffered();
    let farewell = match svc.listener.protocol {
        config::Protocol::Imap => "* BYE Disconnected for inactivity.\r\n".to_string(),
        config::Protocol::Smtp => format!("421 4.4.2 {} Error: timeout exceeded\r\n", svc.hostname),
    };
    let idle = crate::relay::Idle {
        timeout: svc.limits.idle_timeout,
        farewell: farewell.as_bytes(),
    };
    match crate::relay::run(
        &mut client.stream,
        &pending,
        &mut up.stream,
        &up.buffered,
        idle,
    )
    .await
    {
        Ok(bytes) => {
            outcome.relayed = Some(bytes);
            outcome.ended(if bytes.idle_timeout {
                "idle-timeout"
            } else {
                "relayed"
            })
        }
        Err(_) => outcome.ended("relay-error"),
    }
}

/// How a connection ended, for the one log line per connection.
#[derive(Debug, Default)]
pub struct Outcome {
    pub mechanism: Option<&'static str>,
    pub user: Option<String>,
    /// A short word: `relayed`, `closed`, `timeout`, `too-many-failures`, `error`.
    pub result: &'static str,
    /// Why the last login attempt failed, if one did (never a secret).
    pub last_failure: Option<String>,
    pub relayed: Option<crate::relay::Bytes>,
}

impl Outcome {
    pub fn ended(mut self, result: &'static str) -> Self {
        self.result = result;
        self
    }
}
