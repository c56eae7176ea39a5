//! `[upstream.NAME]`: where a listener's sessions go and how the proxy logs in there.

use super::listener::{protocol_named, tls_mode};
use super::raw::RawUpstream;
use super::*;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// The protocol it speaks (`protocol = "imap"`); `None`: the protocol
    /// of the listeners that use it (which must then agree).
    pub protocol: Option<Protocol>,
    /// `host:port` as configured (resolved at connect time).
    pub address: String,
    pub tls: TlsMode,
    pub tls_ca: Option<PathBuf>,
    pub tls_name: String,
    pub login: UpstreamLogin,
    pub identity: IdentityField,
    /// How the identity's letter case reaches the upstream (`identity-case`).
    pub identity_case: IdentityCase,
    pub connect_timeout: Duration,
    /// Send a PROXY protocol v2 header with the client's address first.
    pub proxy_protocol_v2: bool,
}

#[derive(Debug, Clone)]
pub enum UpstreamLogin {
    /// SASL PLAIN with authzid = the user, authcid/password = the master credentials.
    MasterUser { username: String, secret: Secret },
    /// Postfix XCLIENT LOGIN=<user> (SMTP only).
    Xclient,
}

/// Which resolved field names the user at the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    Username,
    Email,
}

pub(super) fn upstream(name: &str, raw: RawUpstream) -> Result<Upstream> {
    let key = |k: &str| format!("upstream.{name}.{k}");
    let host = raw
        .address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| {
            ConfigError::new(
                key("address"),
                format!("`{}` is not host:port", raw.address),
            )
        })?;
    let tls = tls_mode(&key("tls"), raw.tls.as_deref())?;
    let login = match raw.login {
        None => {
            return Err(ConfigError::new(
                key("login.method"),
                "is required (\"master-user\" or \"xclient\")",
            ))
        }
        Some(l) => match l.method.as_str() {
            "master-user" => {
                let username = l.username.filter(|u| !u.is_empty()).ok_or_else(|| {
                    ConfigError::new(key("login.username"), "is required for master-user")
                })?;
                let secret = l.secret.ok_or_else(|| {
                    ConfigError::new(key("login.secret"), "is required for master-user")
                })?;
                UpstreamLogin::MasterUser {
                    username,
                    secret: resolve_secret(&key("login.secret"), secret)?,
                }
            }
            "xclient" => UpstreamLogin::Xclient,
            other => {
                return Err(ConfigError::new(
                    key("login.method"),
                    format!("`{other}` is not one of \"master-user\", \"xclient\""),
                ))
            }
        },
    };
    let identity = match raw.identity.as_deref() {
        None | Some("username") => IdentityField::Username,
        Some("email") => IdentityField::Email,
        Some(other) => {
            return Err(ConfigError::new(
                key("identity"),
                format!("`{other}` is not one of \"username\", \"email\""),
            ))
        }
    };
    let connect_timeout = match raw.connect_timeout {
        Some(v) => duration(&key("connect-timeout"), &v)?,
        None => Duration::from_secs(10),
    };
    let proxy_protocol_v2 = match raw.proxy_protocol.as_deref() {
        None | Some("none") => false,
        Some("v2") => true,
        Some(other) => {
            return Err(ConfigError::new(
                key("proxy-protocol"),
                format!("`{other}` is not one of \"none\", \"v2\""),
            ))
        }
    };
    let protocol = match raw.protocol.as_deref() {
        None => None,
        Some(p) => Some(protocol_named(&key("protocol"), p)?),
    };
    Ok(Upstream {
        name: name.to_string(),
        protocol,
        address: raw.address,
        tls,
        tls_ca: raw.tls_ca.map(PathBuf::from),
        tls_name: raw.tls_name.unwrap_or(host),
        login,
        identity,
        identity_case: hygiene::identity_case(&key("identity-case"), raw.identity_case.as_deref())?,
        connect_timeout,
        proxy_protocol_v2,
    })
}
