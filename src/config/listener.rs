//! `[listener.NAME]`: protocol, addresses, TLS, directories, upstream.

use super::raw::RawListener;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    Pop3,
    ManageSieve,
}

impl Protocol {
    /// Every protocol, for what is built once per protocol (TLS acceptors).
    pub const ALL: &'static [Protocol] = &[
        Protocol::Imap,
        Protocol::Smtp,
        Protocol::Pop3,
        Protocol::ManageSieve,
    ];

    /// The name in the configuration (`protocol = "imap"`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
            Protocol::ManageSieve => "managesieve",
        }
    }
}

/// How a listener (or an upstream) uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    pub binds: Vec<SocketAddr>,
    pub tls: TlsMode,
    /// The directories that validate tokens, in order (at least one).
    pub directories: Vec<String>,
    pub upstream: String,
    pub password_passthrough: bool,
    /// A password that is a bearer token is validated like OAUTHBEARER.
    pub password_tokens: bool,
    pub xoauth2_error_status: String,
    /// Inbound PROXY protocol: `Some(networks)` means every connection must
    /// start with a v1 or v2 header and come from one of these networks.
    pub proxy_protocol: Option<Vec<Network>>,
    /// The host name mail clients are told (autoconfig); default `server.hostname`.
    pub public_name: Option<String>,
    /// LOGIN / AUTH PLAIN / AUTH LOGIN with an app password from the store.
    pub app_passwords: bool,
}

impl Listener {
    /// Whether LOGIN / AUTH PLAIN / AUTH LOGIN are offered: passed through,
    /// carrying a bearer token as the password, or an app password.
    pub fn accepts_passwords(&self) -> bool {
        self.password_passthrough || self.password_tokens || self.app_passwords
    }
}

/// The protocol called `name` in the configuration.
pub(super) fn protocol_named(key: &str, name: &str) -> Result<Protocol> {
    match Protocol::ALL.iter().find(|p| p.name() == name) {
        Some(&p) => Ok(p),
        None => {
            let names: Vec<String> = Protocol::ALL
                .iter()
                .map(|p| format!("\"{}\"", p.name()))
                .collect();
            Err(ConfigError::new(
                key,
                format!(
                    "`{name}` is not one of {}, \"https\" (the app-password site)",
                    names.join(", ")
                ),
            ))
        }
    }
}

pub(super) fn listener(name: &str, raw: RawListener) -> Result<Listener> {
    let key = |k: &str| format!("listener.{name}.{k}");
    let protocol = protocol_named(&key("protocol"), &raw.protocol)?;
    let binds = binds(name, raw.bind)?;
    for (k, set) in [
        ("public-url", raw.public_url.is_some()),
        ("cookie-key", raw.cookie_key.is_some()),
    ] {
        if set {
            return Err(ConfigError::new(
                key(k),
                "is only used on an \"https\" listener",
            ));
        }
    }
    if raw.upstream.is_empty() {
        return Err(ConfigError::new(key("upstream"), "is required"));
    }
    let tls = tls_mode(&key("tls"), raw.tls.as_deref())?;
    let xoauth2_error_status = raw
        .xoauth2_error_status
        .unwrap_or_else(|| "400".to_string());
    if !matches!(xoauth2_error_status.as_str(), "400" | "401" | "403") {
        return Err(ConfigError::new(
            key("xoauth2-error-status"),
            "must be \"400\", \"401\" or \"403\"",
        ));
    }
    let directories = raw.directory.into_vec();
    if directories.is_empty() {
        return Err(ConfigError::new(
            key("directory"),
            "needs at least one directory",
        ));
    }
    if let Some(d) = directories
        .iter()
        .enumerate()
        .find(|(i, d)| directories[..*i].contains(d))
    {
        return Err(ConfigError::new(
            key("directory"),
            format!("`{}` is listed twice", d.1),
        ));
    }
    let proxy_protocol = match (raw.proxy_protocol, raw.proxy_trusted_networks) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ConfigError::new(
                key("proxy-trusted-networks"),
                "is only used with `proxy-protocol = true`",
            ))
        }
        (true, None) => {
            return Err(ConfigError::new(
                key("proxy-trusted-networks"),
                "is required with `proxy-protocol = true` (the load balancers' addresses)",
            ))
        }
        (true, Some(nets)) => {
            let nets = nets
                .iter()
                .map(|n| n.parse::<Network>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(key("proxy-trusted-networks"), e))?;
            if nets.is_empty() {
                return Err(ConfigError::new(
                    key("proxy-trusted-networks"),
                    "needs at least one network",
                ));
            }
            Some(nets)
        }
    };
    Ok(Listener {
        name: name.to_string(),
        protocol,
        binds,
        tls,
        directories,
        upstream: raw.upstream,
        password_passthrough: raw.password_passthrough,
        password_tokens: raw.password_tokens,
        xoauth2_error_status,
        proxy_protocol,
        public_name: raw.public_name,
        app_passwords: raw.app_passwords,
    })
}

/// A listener's `bind`: one address or a list, at least one.
pub(super) fn binds(name: &str, bind: raw::OneOrMany) -> Result<Vec<SocketAddr>> {
    let key = format!("listener.{name}.bind");
    let binds = bind
        .into_vec()
        .iter()
        .map(|b| {
            b.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    &key,
                    format!("`{b}` is not an address like \"[::]:993\" or \"0.0.0.0:993\""),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if binds.is_empty() {
        return Err(ConfigError::new(key, "needs at least one address"));
    }
    Ok(binds)
}

pub(super) fn tls_mode(key: &str, value: Option<&str>) -> Result<TlsMode> {
    match value {
        None | Some("none") => Ok(TlsMode::None),
        Some("starttls") => Ok(TlsMode::StartTls),
        Some("implicit") => Ok(TlsMode::Implicit),
        Some(other) => Err(ConfigError::new(
            key,
            format!("`{other}` is not one of \"none\", \"starttls\", \"implicit\""),
        )),
    }
}
