//! The self-service site (issue 14): `[listener.NAME] protocol = "https"`
//! and the directory keys it signs users in with (`client.*`,
//! `app-passwords.*`).

use super::raw::{RawAppPasswords, RawClient, RawListener};
use super::*;

/// An `https` listener: the app-password site, served with the proxy's
/// certificate (`[server.tls]`). It has no upstream.
#[derive(Debug, Clone)]
pub struct WebListener {
    pub name: String,
    pub binds: Vec<SocketAddr>,
    /// The directory users sign in with (it has `client.id`).
    pub directory: String,
    /// The site's base URL, ending in `/` (redirect URI: `<public-url>oidc/callback`).
    pub public_url: Option<String>,
    /// The session cookie's HMAC key; generated at start when absent.
    pub cookie_key: Option<Secret>,
}

/// The OpenID Connect client the site signs users in as.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcClient {
    pub id: String,
    pub secret: Option<Secret>,
}

/// `app-passwords.*` of a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPasswordSettings {
    /// How often a user's refresh token is used to confirm they are active.
    pub standing_check: Duration,
    /// Lifetime after the last sign-in where the provider gives no refresh token.
    pub max_age: Duration,
    /// How long app passwords keep working while the provider cannot be
    /// asked (unreachable, or answering errors) after its last confirmation.
    pub unreachable_grace: Duration,
}

impl Default for AppPasswordSettings {
    fn default() -> Self {
        Self {
            standing_check: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(90 * 24 * 3600),
            unreachable_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// The smallest cookie key accepted (HMAC-SHA256: 32 bytes).
pub const MIN_COOKIE_KEY: usize = 32;

pub(super) fn web_listener(name: &str, mut raw: RawListener) -> Result<WebListener> {
    let key = |k: &str| format!("listener.{name}.{k}");
    for (k, set) in [
        ("upstream", !raw.upstream.is_empty()),
        ("tls", raw.tls.is_some()),
        ("password-passthrough", raw.password_passthrough),
        ("password-tokens", raw.password_tokens),
        ("xoauth2-error-status", raw.xoauth2_error_status.is_some()),
        ("proxy-protocol", raw.proxy_protocol),
        ("public-name", raw.public_name.is_some()),
    ] {
        if set {
            return Err(ConfigError::new(
                key(k),
                "is not used on an \"https\" listener (the self-service site)",
            ));
        }
    }
    let binds = listener::binds(name, raw.bind)?;
    let mut directories = raw.directory.into_vec();
    if directories.len() != 1 {
        return Err(ConfigError::new(
            key("directory"),
            "names the one directory users sign in with",
        ));
    }
    let directory = directories.remove(0);
    if let Some(url) = &raw.public_url {
        check_url(&key("public-url"), url)?;
        if !url.ends_with('/') {
            return Err(ConfigError::new(key("public-url"), "must end with `/`"));
        }
    }
    let cookie_key = match raw.cookie_key.take() {
        Some(v) => {
            let k = resolve_secret(&key("cookie-key"), v)?;
            if k.expose().len() < MIN_COOKIE_KEY {
                return Err(ConfigError::new(
                    key("cookie-key"),
                    format!("must be at least {MIN_COOKIE_KEY} bytes"),
                ));
            }
            Some(k)
        }
        None => None,
    };
    Ok(WebListener {
        name: name.to_string(),
        binds,
        directory,
        public_url: raw.public_url,
        cookie_key,
    })
}

pub(super) fn oidc_client(name: &str, raw: Option<RawClient>) -> Result<Option<OidcClient>> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.id.is_empty() {
        return Err(ConfigError::new(
            format!("directory.{name}.client.id"),
            "must not be empty",
        ));
    }
    let secret = raw
        .secret
        .map(|s| resolve_secret(&format!("directory.{name}.client.secret"), s))
        .transpose()?;
    Ok(Some(OidcClient { id: raw.id, secret }))
}

pub(super) fn app_passwords(
    name: &str,
    raw: Option<RawAppPasswords>,
) -> Result<AppPasswordSettings> {
    let mut settings = AppPasswordSettings::default();
    let Some(raw) = raw else { return Ok(settings) };
    let key = |k: &str| format!("directory.{name}.app-passwords.{k}");
    if let Some(v) = raw.standing_check {
        settings.standing_check = duration(&key("standing-check"), &v)?;
        if settings.standing_check < Duration::from_secs(10) {
            return Err(ConfigError::new(
                key("standing-check"),
                "must be at least 10s",
            ));
        }
    }
    if let Some(v) = raw.max_age {
        settings.max_age = duration(&key("max-age"), &v)?;
        if settings.max_age < Duration::from_secs(10) {
            return Err(ConfigError::new(key("max-age"), "must be at least 10s"));
        }
    }
    if let Some(v) = raw.unreachable_grace {
        settings.unreachable_grace = duration(&key("unreachable-grace"), &v)?;
    }
    if settings.unreachable_grace < settings.standing_check * 2 {
        return Err(ConfigError::new(
            key("unreachable-grace"),
            format!(
                "must be at least twice `standing-check` ({}s), or one slow check would lock users out",
                settings.standing_check.as_secs()
            ),
        ));
    }
    Ok(settings)
}

/// Cross-checks of the `https` listeners against the rest.
pub(super) fn check(
    web: &[WebListener],
    server: &Server,
    directories: &BTreeMap<String, Directory>,
) -> Result<()> {
    for w in web {
        let key = |k: &str| format!("listener.{}.{k}", w.name);
        if server.tls.is_none() {
            return Err(ConfigError::new(
                key("protocol"),
                "an \"https\" listener needs [server.tls] cert and key",
            ));
        }
        let Some(d) = directories.get(&w.directory) else {
            return Err(ConfigError::new(
                key("directory"),
                format!("no [directory.{}] is configured", w.directory),
            ));
        };
        if d.client.is_none() {
            return Err(ConfigError::new(
                format!("directory.{}.client.id", d.name),
                format!(
                    "is required: users of listener `{}` sign in with it",
                    w.name
                ),
            ));
        }
        if d.issuer.is_none() {
            return Err(ConfigError::new(
                format!("directory.{}.issuer", d.name),
                format!(
                    "is required: listener `{}` signs users in by discovery",
                    w.name
                ),
            ));
        }
    }
    Ok(())
}
