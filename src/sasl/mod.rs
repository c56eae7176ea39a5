//! SASL decoding shared by every protocol: pure functions, no I/O.
//!
//! - [`oauthbearer`]: RFC 7628 §3.1 (GS2 header + key/value pairs).
//! - [`xoauth2`]: Google's `user=…^Aauth=Bearer …^A^A`.
//! - [`plain`]: PLAIN (RFC 4616) and LOGIN credentials.
//! - [`challenge`]: the RFC 7628 §3.2.2 error JSON sent before a failure.

pub mod challenge;
pub mod oauthbearer;
pub mod plain;
pub mod xoauth2;

use crate::secret::Secret;
use base64::Engine;

/// The mechanisms a client may name in AUTHENTICATE / AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    OAuthBearer,
    XOAuth2,
    Plain,
    Login,
}

impl Mechanism {
    /// Case-insensitive lookup of a SASL mechanism name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "OAUTHBEARER" => Some(Self::OAuthBearer),
            "XOAUTH2" => Some(Self::XOAuth2),
            "PLAIN" => Some(Self::Plain),
            "LOGIN" => Some(Self::Login),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OAuthBearer => "OAUTHBEARER",
            Self::XOAuth2 => "XOAUTH2",
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
        }
    }

    pub fn is_bearer(self) -> bool {
        matches!(self, Self::OAuthBearer | Self::XOAuth2)
    }
}

/// What a bearer mechanism carries: the token and the identity the client
/// claims (GS2 `a=` or XOAUTH2 `user=`), which is checked, never trusted.
#[derive(Debug)]
pub struct BearerCredentials {
    pub authzid: Option<String>,
    pub token: Secret,
}

/// Why a SASL message could not be decoded. The text is safe to log (it
/// never contains the message itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// Decodes a client's base64 SASL response. `=` is the empty response
/// (RFC 4959 / RFC 4954). `None` for invalid base64.
pub fn decode_response(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    if text == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes the bearer mechanisms' initial message.
pub fn decode_bearer(mech: Mechanism, message: &[u8]) -> Result<BearerCredentials, Malformed> {
    match mech {
        Mechanism::OAuthBearer => oauthbearer::parse(message),
        Mechanism::XOAuth2 => xoauth2::parse(message),
        _ => Err(Malformed("not a bearer mechanism")),
    }
}

/// Extracts the token from an `auth` value: `Bearer <token>`, the scheme
/// matched case-insensitively (RFC 7628 §3.1, RFC 6750 §2.1).
fn bearer_token(auth: &[u8]) -> Result<Secret, Malformed> {
    let text = std::str::from_utf8(auth).map_err(|_| Malformed("auth value is not UTF-8"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or(Malformed("auth value has no scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Malformed("auth scheme is not Bearer"));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(Malformed("empty bearer token"));
    }
    // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
    {
        return Err(Malformed(
            "bearer token has characters outside RFC 6750 b64token",
        ));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_is_empty_response() {
        assert_eq!(decode_response(b"="), Some(vec![]));
        assert_eq!(decode_response(b"AQ=="), Some(vec![1]));
        assert_eq!(decode_response(b"not base64!"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"bEaReR abc.def").unwrap().expose(), "abc.def");
        assert!(bearer_token(b"Basic abc").is_err());
        assert!(bearer_token(b"Bearer ").is_err());
        assert!(bearer_token(b"Bearer a\r\nb").is_err());
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(
            Mechanism::from_name("oauthbearer"),
            Some(Mechanism::OAuthBearer)
        );
        assert_eq!(Mechanism::from_name("XOAUTH2"), Some(Mechanism::XOAuth2));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }
}
