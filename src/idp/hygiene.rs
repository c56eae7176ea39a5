//! Is this token an access token meant for us? The checks beyond signature
//! and lifetime (issue 11), pure functions over the JOSE header and claims:
//!
//! - RFC 9068 §2.1 / §4: a JWT access token has `typ: at+jwt`; `JWT` or no
//!   `typ` only with `jwt.allow-untyped`. Any other `typ` is some other
//!   kind of JWT (logout, introspection answer, DPoP proof, ...).
//! - An OpenID ID token (OpenID Connect Core §2) is never an access token:
//!   it has `nonce`, `at_hash` or `c_hash`, or Keycloak's `typ: "ID"` claim,
//!   or (untyped) an `aud` that is its own `azp`.
//! - RFC 7515 §4.1.11: `crit` names header parameters the recipient must
//!   understand; this validator implements none, so any `crit` is refused,
//!   as is RFC 7797's unencoded payload (`b64: false`).
//! - RFC 9449 (DPoP) / RFC 8705 (mTLS): a `cnf` claim binds the token to a
//!   key the SASL client cannot prove it holds: refused, in JWTs and in
//!   introspection answers.
//! - `email_verified: false` (bool or string): that email is not an identity.
//! - UserInfo carries no `scope`: [`userinfo_has_scope`] reads the claims a
//!   standard scope releases.
//!
//! jsonwebtoken's `Header` drops unknown parameters, so the header is
//! decoded here (base64url, bounded, a JSON object).

use super::{Error, Rejection};
use base64::Engine;
use serde_json::{Map, Value};

/// A JOSE header longer than this (base64url characters) is refused.
pub const MAX_HEADER: usize = 4096;
/// Claims longer than this are not read before the signature is checked.
const MAX_UNVERIFIED_CLAIMS: usize = 64 * 1024;

/// What the header's `typ` said, for the claim checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typ {
    /// `at+jwt` / `application/at+jwt`.
    AccessToken,
    /// `JWT` or no `typ` (accepted with `jwt.allow-untyped` only).
    Untyped,
}

/// The header of a JWS compact serialization as a JSON object.
pub fn raw_header(token: &str) -> Result<Map<String, Value>, Error> {
    segment(token.split('.').next().unwrap_or_default(), MAX_HEADER)
        .ok_or_else(|| invalid("not a well-formed JWT (header)".into()))
}

/// A header refusal made clearer for an ID token: its header says nothing
/// (no `typ`, or `JWT`), its unverified claims say what it is. Only the
/// wording of a refusal depends on unverified claims, never a decision.
pub fn explain(token: &str, refusal: Error) -> Error {
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| segment(p, MAX_UNVERIFIED_CLAIMS));
    match claims
        .as_ref()
        .and_then(|c| id_token_marker(c, Typ::Untyped))
    {
        Some(why) => id_token(&format!("{why}; and its header has no typ at+jwt")),
        None => refusal,
    }
}

fn segment(part: &str, max: usize) -> Option<Map<String, Value>> {
    if part.len() > max {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `crit`, `b64` and `typ`: whether this is a JWT access token by its header.
pub fn check_header(header: &Map<String, Value>, allow_untyped: bool) -> Result<Typ, Error> {
    if header.contains_key("crit") {
        return Err(invalid(
            "JWT header `crit` names extensions this validator does not implement (RFC 7515 §4.1.11)"
                .into(),
        ));
    }
    if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
        return Err(invalid(
            "unencoded JWT payload (`b64`, RFC 7797) is not accepted".into(),
        ));
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(invalid("JWT typ is not a string".into())),
    };
    let lower = typ.map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("at+jwt" | "application/at+jwt") => Ok(Typ::AccessToken),
        None | Some("jwt" | "application/jwt") if allow_untyped => Ok(Typ::Untyped),
        None => Err(invalid(
            "JWT without typ is not an access token (RFC 9068 wants at+jwt; set \
             jwt.allow-untyped = true if the provider does not type its access tokens)"
                .into(),
        )),
        Some("jwt" | "application/jwt") => Err(invalid(format!(
            "JWT typ {} is not an access token (RFC 9068 wants at+jwt; set \
             jwt.allow-untyped = true if the provider sends typ JWT on access tokens)",
            shown(typ.unwrap_or_default())
        ))),
        Some(_) => Err(invalid(format!(
            "JWT typ {} is not an access token",
            shown(typ.unwrap_or_default())
        ))),
    }
}

/// ID-token markers and sender constraints in a verified JWT's claims.
pub fn check_claims(claims: &Map<String, Value>, typ: Typ) -> Result<(), Error> {
    if let Some(why) = id_token_marker(claims, typ) {
        return Err(id_token(&why));
    }
    check_cnf(claims)
}

/// What shows these claims are an ID token's, if anything does.
fn id_token_marker(claims: &Map<String, Value>, typ: Typ) -> Option<String> {
    if let Some(marker) = ["nonce", "at_hash", "c_hash"]
        .into_iter()
        .find(|k| claims.contains_key(*k))
    {
        return Some(format!("it has `{marker}`"));
    }
    if claims
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("ID"))
    {
        return Some("its `typ` claim is \"ID\"".into());
    }
    (typ == Typ::Untyped && audience_is_azp(claims)).then(|| "its `aud` is its own `azp`".into())
}

/// A sender-constrained token (RFC 9449 DPoP, RFC 8705 mTLS) is refused.
pub fn check_cnf(claims: &Map<String, Value>) -> Result<(), Error> {
    match claims.get("cnf") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(invalid(
            "the token is sender-constrained (`cnf`, DPoP or mTLS): a SASL client cannot prove \
             the key"
                .into(),
        )),
    }
}

/// `email_verified` is present and false (`false` or the string "false").
pub fn email_unverified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("false"),
        _ => false,
    }
}

/// Whether a UserInfo answer shows `scope` was granted: its own `scope` /
/// `scp` claim when it has one, else a claim the standard scope releases
/// (OpenID Connect Core §5.4). The configuration allows only standard
/// scopes on userinfo directories.
pub fn userinfo_has_scope(claims: &Map<String, Value>, scope: &str) -> bool {
    if claims.contains_key("scope") || claims.contains_key("scp") {
        return super::jwt::has_scope(claims, scope);
    }
    let released: &[&str] = match scope {
        "openid" => &["sub"],
        "email" => &["email"],
        "profile" => &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
        "address" => &["address"],
        "phone" => &["phone_number", "phone_number_verified"],
        _ => &[],
    };
    released
        .iter()
        .any(|c| claims.get(*c).is_some_and(|v| !v.is_null()))
}

fn audience_is_azp(claims: &Map<String, Value>) -> bool {
    let Some(azp) = claims.get("azp").and_then(Value::as_str) else {
        return false;
    };
    match claims.get("aud") {
        Some(Value::String(a)) => a == azp,
        Some(Value::Array(list)) => matches!(list.as_slice(), [only] if only.as_str() == Some(azp)),
        _ => false,
    }
}

fn id_token(why: &str) -> Error {
    invalid(format!("an ID token is not an access token ({why})"))
}

fn invalid(why: String) -> Error {
    Error::Rejected(Rejection::InvalidToken(why))
}

/// A peer-chosen string for a log line: quoted, escaped, at most 40 chars.
fn shown(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    format!("{short:?}")
}
