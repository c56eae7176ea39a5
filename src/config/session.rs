//! A directory's `session.*` and `backchannel-logout.*` keys: what happens
//! to relayed sessions when access ends at the provider.

use super::*;

/// What happens to an open session when its token's `exp` passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AtExpiry {
    /// The session goes on (IMAP cannot re-authenticate inside a session);
    /// re-validation stops at `exp`, back-channel logout and `kick` still end it.
    #[default]
    Keep,
    /// The session ends at `exp` + `clock-skew`; the client logs in again.
    End,
}

/// A directory's policy for open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionPolicy {
    /// Ask the provider about each open session's token this often.
    pub revalidate: Option<Duration>,
    pub at_expiry: AtExpiry,
}

/// OpenID Connect Back-Channel Logout for a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackchannelLogout {
    /// The client id the provider puts in the logout token's `aud`.
    pub audience: String,
}

/// The shortest re-validation interval (a provider request per token each time).
const MIN_REVALIDATE: Duration = Duration::from_secs(1);

pub(super) fn session_policy(name: &str, raw: Option<raw::RawSession>) -> Result<SessionPolicy> {
    let Some(raw) = raw else {
        return Ok(SessionPolicy::default());
    };
    let key = format!("directory.{name}.session.revalidate");
    let revalidate = match raw.revalidate {
        None => None,
        Some(v) => {
            let d = duration(&key, &v)?;
            if d < MIN_REVALIDATE {
                return Err(ConfigError::new(key, "must be at least 1s"));
            }
            Some(d)
        }
    };
    Ok(SessionPolicy {
        revalidate,
        at_expiry: raw.at_expiry.unwrap_or_default(),
    })
}

pub(super) fn backchannel_logout(
    name: &str,
    raw: Option<raw::RawBackchannelLogout>,
    issuer: Option<&str>,
) -> Result<Option<BackchannelLogout>> {
    let Some(raw) = raw else { return Ok(None) };
    let key = format!("directory.{name}.backchannel-logout.audience");
    if raw.audience.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            "must name the client id the provider puts in `aud`",
        ));
    }
    if issuer.is_none() {
        return Err(ConfigError::new(
            format!("directory.{name}.issuer"),
            "is required with backchannel-logout (the logout token's `iss` and signing keys come from it)",
        ));
    }
    Ok(Some(BackchannelLogout {
        audience: raw.audience,
    }))
}
