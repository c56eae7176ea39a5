//! OpenID Connect Back-Channel Logout 1.0, §2.4 and §2.6: is this logout
//! token good? The pure checks of its header and claims; the signature is
//! [`logout_verifier`](super::logout_verifier)'s, the `jti` replay cache
//! [`replay`](super::replay)'s.
//!
//! §2.6 in order: (1) an encrypted token is refused (nothing is configured
//! to decrypt it); (2, 3) signature, `iss`, `aud` (and `azp` when present,
//! OpenID Connect Core §3.1.3.7 step 5), `iat` as for an ID token; (4)
//! `sub` and/or `sid`; (5) `events` with the back-channel logout member,
//! a JSON object; (6) no `nonce`; (7) `jti` not seen before. Earlier drafts
//! are common among providers: a token without `exp`, or typed `JWT` or
//! not at all, is accepted, its age then bounded by `iat` ([`MAX_AGE`]).
//! A refusal names the problem and never quotes the token.

use serde_json::{Map, Value};

/// The `events` member a logout token must carry (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token without `exp` may be (plus the clock skew).
pub const MAX_AGE: i64 = 300;
/// Longer `jti`, `sub` or `sid` values are refused (no provider needs them).
const MAX_CLAIM: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token is not a valid logout token for this directory (HTTP 400).
    #[error("{0}")]
    Refused(&'static str),
    /// The provider's signing keys could not be had (HTTP 503: the token
    /// may be good, the provider may send it again).
    #[error("the provider's signing keys are unavailable: {0}")]
    Unavailable(String),
}

/// What a valid logout token asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    /// Until when (seconds since the epoch) this token could still be
    /// accepted: its `jti` is remembered that long.
    pub valid_until: i64,
}

/// What the claims are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// The client id the provider puts in `aud`.
    pub audience: &'a str,
    pub skew_secs: i64,
}

fn refused(why: &'static str) -> Error {
    Error::Refused(why)
}

/// The JOSE header: a JWS (not a JWE: §2.6 step 1 would need a decryption
/// key), typed `logout+jwt` (§2.4), `JWT` or not at all, and no `crit`
/// (RFC 7515 §4.1.11: no extension is understood here) nor `b64`.
pub fn check_header(token: &str, header: &Map<String, Value>) -> Result<(), Error> {
    if token.split('.').count() != 3 {
        return Err(refused(
            "not a signed JWT (encrypted logout tokens are not accepted)",
        ));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) => {
            let t = t.to_ascii_lowercase();
            if !matches!(t.as_str(), "logout+jwt" | "application/logout+jwt" | "jwt") {
                return Err(refused("header typ is not logout+jwt"));
            }
        }
        Some(_) => return Err(refused("header typ is not a string")),
    }
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(refused(
            "header names extensions (crit, b64) that are not supported",
        ));
    }
    Ok(())
}

/// The claims of a token whose signature was verified (§2.6 steps 2 to 6).
pub fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expect<'_>,
    now: i64,
) -> Result<Logout, Error> {
    check_issuer(claims, expect.issuer)?;
    check_audience(claims, expect.audience)?;
    let valid_until = check_times(claims, expect.skew_secs, now)?;
    check_events(claims)?;
    if claims.contains_key("nonce") {
        return Err(refused("a logout token must not contain nonce"));
    }
    let sub = optional_string(claims, "sub", "sub is not a usable string")?;
    let sid = optional_string(claims, "sid", "sid is not a usable string")?;
    if sub.is_none() && sid.is_none() {
        return Err(refused("neither sub nor sid present"));
    }
    let jti = optional_string(claims, "jti", "jti is not a usable string")?
        .ok_or_else(|| refused("jti missing"))?;
    Ok(Logout {
        sub,
        sid,
        jti,
        valid_until,
    })
}

fn check_issuer(claims: &Map<String, Value>, issuer: &str) -> Result<(), Error> {
    match claims.get("iss").and_then(Value::as_str) {
        None => Err(refused("iss missing")),
        Some(iss) if iss.trim_end_matches('/') == issuer.trim_end_matches('/') => Ok(()),
        Some(_) => Err(refused("wrong issuer (iss)")),
    }
}

/// `aud` is the client id or a list containing it; an `azp`, when
/// present, must be that client id too.
fn check_audience(claims: &Map<String, Value>, audience: &str) -> Result<(), Error> {
    let ours = match claims.get("aud") {
        None => return Err(refused("aud missing")),
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        Some(_) => return Err(refused("aud is neither a string nor a list")),
    };
    if !ours {
        return Err(refused("wrong audience (aud)"));
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(audience) => Err(refused("wrong authorized party (azp)")),
        _ => Ok(()),
    }
}

/// `iat` required, not in the future; `exp` not passed; without `exp`,
/// `iat` not older than [`MAX_AGE`]. All with the clock skew. Returns
/// until when the token could be accepted.
fn check_times(claims: &Map<String, Value>, skew: i64, now: i64) -> Result<i64, Error> {
    let iat = match claims.get("iat") {
        None => return Err(refused("iat missing")),
        Some(v) => v.as_i64().ok_or_else(|| refused("iat is not a number"))?,
    };
    if iat > now.saturating_add(skew) {
        return Err(refused("iat is in the future"));
    }
    match claims.get("exp") {
        None => {
            let until = iat.saturating_add(MAX_AGE).saturating_add(skew);
            if until < now {
                return Err(refused("too old (iat, and no exp)"));
            }
            Ok(until)
        }
        Some(v) => {
            let exp = v.as_i64().ok_or_else(|| refused("exp is not a number"))?;
            let until = exp.saturating_add(skew);
            if until < now {
                return Err(refused("expired (exp)"));
            }
            Ok(until)
        }
    }
}

fn check_events(claims: &Map<String, Value>) -> Result<(), Error> {
    let events = match claims.get("events") {
        None => return Err(refused("events missing")),
        Some(Value::Object(events)) => events,
        Some(_) => return Err(refused("events is not a JSON object")),
    };
    match events.get(EVENT) {
        None => Err(refused("events lacks the back-channel logout event")),
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(refused(
            "the back-channel logout event is not a JSON object",
        )),
    }
}

/// A claim that must be a non-empty string of bounded length when present.
fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
    unusable: &'static str,
) -> Result<Option<String>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CLAIM => Ok(Some(s.clone())),
        Some(_) => Err(refused(unusable)),
    }
}
