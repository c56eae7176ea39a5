//! The site's small cryptography, all from aws-lc-rs (already in the build
//! through rustls): random values, the cookie HMAC, PKCE's S256 and
//! constant-time comparison.

use aws_lc_rs::{constant_time, digest, hmac, rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `n` random bytes from the system's generator.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, Unavailable> {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes).map_err(|_| Unavailable)?;
    Ok(bytes)
}

/// A random value of 256 bits, base64url without padding (43 characters):
/// state, nonce, PKCE verifier, session ids.
pub fn random_token() -> Result<String, Unavailable> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(32)?))
}

/// The system's random generator failed (it does not in practice).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct Unavailable;

/// PKCE `code_challenge` for `code_challenge_method=S256` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Signs and checks cookie values and CSRF tokens (HMAC-SHA256).
pub struct Signer {
    key: hmac::Key,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A key of 256 random bits (no `cookie-key` configured: sessions then
    /// end at a restart).
    pub fn random() -> Result<Self, Unavailable> {
        Ok(Self::new(&random_bytes(32)?))
    }

    /// `value.signature` (the value must not contain `.`).
    pub fn sign(&self, purpose: &str, value: &str) -> String {
        format!("{value}.{}", self.mac(purpose, value))
    }

    /// The value of a `value.signature` made by [`sign`](Self::sign) for
    /// the same purpose, or `None`.
    pub fn open<'a>(&self, purpose: &str, signed: &'a str) -> Option<&'a str> {
        let (value, mac) = signed.rsplit_once('.')?;
        let expected = self.mac(purpose, value);
        constant_time::verify_slices_are_equal(expected.as_bytes(), mac.as_bytes()).ok()?;
        Some(value)
    }

    /// The HMAC of `purpose` and `value`, base64url. The purpose keeps a
    /// signature made for one use (a session cookie) from passing as
    /// another (a CSRF token).
    pub fn mac(&self, purpose: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign())
    }

    /// Whether `token` is the MAC of `purpose` and `value`, in constant time.
    pub fn verify(&self, purpose: &str, value: &str, token: &str) -> bool {
        let expected = self.mac(purpose, value);
        constant_time::verify_slices_are_equal(expected.as_bytes(), token.as_bytes()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn signatures_are_bound_to_key_and_purpose() {
        let s = Signer::new(&[7; 32]);
        let signed = s.sign("session", "abc");
        assert_eq!(s.open("session", &signed), Some("abc"));
        assert_eq!(s.open("csrf", &signed), None);
        assert_eq!(Signer::new(&[8; 32]).open("session", &signed), None);
        assert_eq!(s.open("session", "abc.AAAA"), None);
        assert_eq!(s.open("session", "abc"), None);
        assert!(s.verify("csrf", "abc", &s.mac("csrf", "abc")));
        assert!(!s.verify("csrf", "abd", &s.mac("csrf", "abc")));
        assert_ne!(random_token().unwrap(), random_token().unwrap());
        assert_eq!(random_token().unwrap().len(), 43);
    }
}
