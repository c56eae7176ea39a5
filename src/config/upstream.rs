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
    /// `host:port` (resolved at connect time): the first backend's; each
    /// backend's own connection settings carry its own address.
    pub address: String,
    /// The backends and how users are routed to them (a single `address`
    /// is a group of one).
    pub backends: super::backends::Backends,
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
    let identity_case =
        hygiene::identity_case(&key("identity-case"), raw.identity_case.as_deref())?;
    let group = super::backends::RawGroup {
        address: raw.address,
        backends: raw.backends,
        routing: raw.routing,
        failover: raw.failover,
        health: raw.health,
    };
    let mut backends = super::backends::backends(name, group, identity_case)?;
    if let Some(n) = &raw.tls_name {
        backends
            .list
            .iter_mut()
            .for_each(|b| b.tls_name = n.clone());
    }
    let first = &backends.list[0];
    let (address, tls_name) = (first.address.clone(), first.tls_name.clone());
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
        address,
        backends,
        tls,
        tls_ca: raw.tls_ca.map(PathBuf::from),
        tls_name,
        login,
        identity,
        identity_case,
        connect_timeout,
        proxy_protocol_v2,
    })
}

impl Upstream {
    /// The connection settings of backend `index`: its address and
    /// certificate name, everything else the upstream's.
    pub fn for_backend(&self, index: usize) -> Upstream {
        let mut one = self.clone();
        if let Some(b) = self.backends.list.get(index) {
            one.address = b.address.clone();
            one.tls_name = b.tls_name.clone();
        }
        one
    }
}
