//! `Secret`: a string that never prints itself.
//!
//! Tokens, passwords and the master credential travel as `Secret` so that a
//! `{:?}` in a log line or an error message cannot leak them. The value is
//! only reachable through [`Secret::expose`], which makes every use visible
//! in review. The whole buffer is zeroized on drop (the `zeroize` crate).

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Call sites are the places to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops trailing `chars` in place (no copy of the secret is made).
    pub fn trim_end_in_place(&mut self, chars: &[char]) {
        let len = self.0.trim_end_matches(chars).len();
        self.0.truncate(len);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Volatile writes over the whole allocation (zeroize), so the
        // compiler cannot drop them as dead stores before the free.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A configuration string read straight into a `Secret`. A value of the
/// wrong type is refused without echoing it (serde's own message would
/// quote it: "invalid type: integer `1234`").
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(kind: &str) -> E {
        E::custom(format_args!(
            "invalid type: {kind} (not shown), expected a string"
        ))
    }
}

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        // Moved, not copied: no second unwiped buffer.
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::refuse("boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::refuse("floating point"))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::refuse("bytes"))
    }
}

/// Bytes that never print themselves: a password as the client sent it,
/// which need not be UTF-8 (an IMAP literal can carry any octets, and
/// Dovecot compares them as they are). Zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The bytes themselves. Call sites are the places to audit.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// As a [`Secret`] string, for token validation (bearer tokens are
    /// ASCII; anything else cannot validate, so a lossy copy is harmless).
    pub fn to_secret(&self) -> Secret {
        Secret::new(String::from_utf8_lossy(&self.0).into_owned())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_keep_non_utf8_and_are_redacted() {
        let s = SecretBytes::new(b"p\xe4ss".to_vec());
        assert_eq!(s.expose(), b"p\xe4ss");
        assert_eq!(format!("{s:?}"), "SecretBytes(<redacted>)");
        assert_eq!(s.to_secret().expose(), "p\u{fffd}ss");
    }

    #[derive(serde::Deserialize)]
    struct Holder {
        secret: Secret,
    }

    #[test]
    fn deserializes_from_a_string_and_never_echoes_a_wrong_type() {
        let h: Holder = toml::from_str("secret = \"hunter2\"").unwrap();
        assert_eq!(h.secret.expose(), "hunter2");
        for (text, kind) in [
            ("secret = 73313373", "integer"),
            ("secret = 7331.3373", "floating point"),
            ("secret = true", "boolean"),
        ] {
            let e = toml::from_str::<Holder>(text).err().unwrap();
            let m = e.message();
            assert!(m.contains(kind), "{m}");
            assert!(!m.contains("7331") && !m.contains("true"), "{m}");
        }
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
