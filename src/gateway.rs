//! The credential check at the heart of every login: decode the bearer
//! message, validate the token at the provider, check the claimed identity,
//! log in upstream as the resolved user, and book the verdict (metrics,
//! failure penalty). [`crate::login`] drives it for every protocol.

use crate::backends::{Chosen, Group, NoBackend, RouteKey};
use crate::config::{self, Limits};
use crate::idp::{self, Directories, Rejection};
use crate::sasl::{self, challenge, Mechanism};
use crate::secret::Secret;
use crate::sessions::{Grant, How, Registry};
use crate::upstream::{self, ClientInfo, LoggedIn, LoginContext, Refusal};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Everything one listener needs at run time, built once per configuration.
pub struct Service {
    pub listener: config::Listener,
    pub hostname: String,
    pub limits: Limits,
    /// The listener's directories, in order.
    pub directories: Directories,
    /// The upstream's backends (one for a single `address`).
    pub upstream: Arc<Group>,
    pub tls: Option<TlsAcceptor>,
    /// Connection counts and the failure penalty, shared by all listeners.
    pub limiter: Arc<crate::limits::Limiter>,
    /// The live relayed sessions, shared by all listeners and reloads.
    pub sessions: Arc<Registry>,
    /// The app-password store, on a listener with `app-passwords = true`.
    pub apppass: Option<Arc<dyn crate::apppass::Store>>,
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

/// The credentials of a password login whose password is a token.
#[derive(Clone, Copy)]
pub struct PasswordToken<'a> {
    /// PLAIN's authorization identity, if the mechanism has one.
    pub authzid: Option<&'a [u8]>,
    pub username: &'a [u8],
    pub token: &'a Secret,
}

pub struct Success {
    pub user: String,
    pub upstream: LoggedIn,
    /// The backend the session went to.
    pub backend: Chosen,
    /// What the session registry keeps about the credential.
    pub grant: Grant,
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

    /// Logs in with a bearer token message; every attempt is counted in
    /// the `logins` metric.
    pub async fn bearer_login(
        &self,
        ctx: LoginContext<'_>,
        mech: Mechanism,
        message: &[u8],
    ) -> Result<Success, Failure> {
        let result = self.bearer_login_once(ctx, mech, message).await;
        self.verdict(ctx.client, mech.name(), &result);
        result
    }

    /// Books a login's verdict the moment it is known, before the client is
    /// told and whatever it does next (hanging up after the error
    /// challenge must not dodge the penalty): the `logins` metric, and the
    /// client's failure in the per-address penalty.
    pub(crate) fn verdict(
        &self,
        client: ClientInfo,
        mechanism: &str,
        result: &Result<Success, Failure>,
    ) {
        let word = match result {
            Ok(_) => "ok",
            Err(f) => f.metric_label(),
        };
        crate::metrics::global().login(&self.listener.name, mechanism, word);
        if let Err(f) = result {
            if f.is_client_fault() {
                self.limiter.record_failure(client.peer.ip());
            }
        }
    }

    async fn bearer_login_once(
        &self,
        ctx: LoginContext<'_>,
        mech: Mechanism,
        message: &[u8],
    ) -> Result<Success, Failure> {
        let creds = sasl::decode_bearer(mech, message).map_err(|e| Failure::Refused {
            status: challenge::Status::InvalidRequest,
            reason: format!("malformed {} message: {e}", mech.name()),
            directory: None,
        })?;
        self.token_login(ctx, creds.authzid.as_deref(), &creds.token, How::Token)
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
    /// PLAIN's authorization identity (empty or absent: none) must be the
    /// user name itself. `mechanism` names the metric row.
    pub async fn password_token_login(
        &self,
        ctx: LoginContext<'_>,
        mechanism: &str,
        creds: PasswordToken<'_>,
    ) -> Result<Success, Failure> {
        let PasswordToken {
            authzid,
            username,
            token,
        } = creds;
        let refused = |reason: &str| Failure::Refused {
            status: challenge::Status::InvalidRequest,
            reason: reason.to_string(),
            directory: None,
        };
        let result = match (std::str::from_utf8(username), authzid) {
            (Err(_), _) => Err(refused("the user name is not UTF-8")),
            (Ok(""), _) => Err(refused("empty user name")),
            (Ok(_), Some(a)) if !a.is_empty() && !a.eq_ignore_ascii_case(username) => Err(refused(
                "PLAIN authorization identity differs from the user name",
            )),
            (Ok(user), _) => {
                self.token_login(ctx, Some(user), token, How::PasswordToken)
                    .await
            }
        };
        self.verdict(ctx.client, mechanism, &result);
        result
    }

    async fn token_login(
        &self,
        ctx: LoginContext<'_>,
        authzid: Option<&str>,
        token: &Secret,
        how: How,
    ) -> Result<Success, Failure> {
        // A penalised address waits before its token reaches the provider.
        let wait = self.limiter.penalty(ctx.client.peer.ip());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
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
        let user = self.upstream_user(&identity, authzid, index)?;
        let grant = match self.directories.get(index) {
            Some(v) => Grant::token(how, v.clone(), token, &identity),
            None => Grant::passthrough(),
        };
        self.log_in_as(ctx, &identity, user, grant).await
    }

    /// Logs in upstream as `user`, whose credential was checked without a
    /// token (an app password): routed as a token without the routing claim.
    pub(crate) async fn upstream_login(
        &self,
        ctx: LoginContext<'_>,
        user: String,
        grant: Grant,
    ) -> Result<Success, Failure> {
        self.log_in_as(ctx, &idp::Identity::default(), user, grant)
            .await
    }

    /// Logs in upstream as `user` on the backend the routing names (the
    /// identity carries the routing claim, if any).
    async fn log_in_as(
        &self,
        ctx: LoginContext<'_>,
        identity: &idp::Identity,
        user: String,
        grant: Grant,
    ) -> Result<Success, Failure> {
        let claim = self.upstream.routing_claim();
        let claim = claim
            .and_then(|c| identity.routing.get(c))
            .map(String::as_str);
        let key = RouteKey { user: &user, claim };
        let plan = self.upstream.plan(key, self.listener.protocol)?;
        let strategy = upstream::strategy(self.listener.protocol);
        let (logged_in, backend) = (self.upstream)
            .login(
                &plan,
                |_| true,
                |target| {
                    let user = &user;
                    async move {
                        let login = strategy.token_login(&target, ctx, user);
                        upstream::bounded(&target, login).await
                    }
                },
            )
            .await;
        let name = &self.upstream.config.name;
        match logged_in {
            Ok(upstream) => Ok(Success {
                user,
                upstream,
                backend,
                grant,
            }),
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

    /// The user the upstream logs in as: the identity the upstream uses, in
    /// the letter case it expects, which a claimed authorization identity
    /// must name.
    fn upstream_user(
        &self,
        identity: &idp::Identity,
        authzid: Option<&str>,
        index: usize,
    ) -> Result<String, Failure> {
        let directory = self.directories.name(index);
        let need = self.upstream.config.identity;
        if let Some(authzid) = authzid {
            if !identity.matches(authzid, self.upstream.config.identity_case) {
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
        let user = identity.get(need).ok_or_else(|| Failure::Refused {
            status: challenge::Status::InsufficientScope,
            reason: "no identity".into(),
            directory: Some(index),
        })?;
        let user = self
            .upstream
            .config
            .identity_case
            .apply(user)
            .map_err(|why| Failure::Refused {
                status: challenge::Status::InvalidToken,
                reason: format!("directory {directory}: {why}"),
                directory: Some(index),
            })?;
        Ok(user)
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
    /// The backend the session went to (and is counted on while it lasts).
    pub backend: Option<Chosen>,
    /// The credential facts of a successful login, for the session registry.
    pub grant: Option<Grant>,
    /// When the last login attempt began (the registry's sequence of ends).
    pub begun: Option<crate::sessions::Mark>,
}

impl Outcome {
    pub fn ended(mut self, result: &'static str) -> Self {
        self.result = result;
        self
    }
}

impl From<NoBackend> for Failure {
    /// A claim that names no backend and a backend that is down are
    /// temporary failures; a user the routing refuses is refused.
    fn from(e: NoBackend) -> Self {
        match e {
            NoBackend::Unroutable(crate::backends::Unroutable::Refused(why)) => {
                Failure::UpstreamRefused(format!("no backend for the user: {why}"))
            }
            NoBackend::Unroutable(e) => Failure::UpstreamUnavailable(format!("routing: {e}")),
            NoBackend::Down { backend, user } => Failure::UpstreamUnavailable(format!(
                "backend {backend}, which holds {user}'s mailbox, is down (failover = false)"
            )),
        }
    }
}
