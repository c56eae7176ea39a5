//! App passwords themselves: generated from the operating system's random
//! source, shown grouped for typing, recognised by their shape, and kept
//! only as a keyed hash (HMAC-SHA256).
//!
//! An app password is 20 random bytes (160 bits) in RFC 4648 base32, lower
//! case, 32 characters shown as 8 groups of 4: `abcd-efgh-...`. Random
//! secrets of that size need no slow password hash (nobody can guess them
//! offline even with the hashes), and a slow hash would make every login a
//! denial-of-service lever; the key keeps a stolen table useless without it.

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Random bytes per password: 160 bits.
const BYTES: usize = 20;
/// Base32 characters per password.
pub const CHARS: usize = BYTES * 8 / 5;
const GROUP: usize = 4;
// At least 128 bits (issue 14).
const _: () = assert!(CHARS * 5 >= 128);

/// The keyed hash of a password: what the store keeps and looks up.
pub type Digest32 = [u8; 32];

/// A new random password, grouped for typing.
pub fn generate() -> Result<Secret, String> {
    let mut raw = Zeroizing::new([0u8; BYTES]);
    getrandom::getrandom(raw.as_mut())
        .map_err(|e| format!("the system's random source failed: {e}"))?;
    let plain = Zeroizing::new(base32(raw.as_ref()));
    let mut shown = String::with_capacity(CHARS + CHARS / GROUP);
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && i % GROUP == 0 {
            shown.push('-');
        }
        shown.push(c);
    }
    Ok(Secret::new(shown))
}

/// Random bytes as lower-case hex: ids and generated keys.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    getrandom::getrandom(&mut raw)
        .map_err(|e| format!("the system's random source failed: {e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    out
}

/// The password in its one canonical form (lower case, no separators), if
/// it has an app password's shape: 32 base32 characters, optionally in
/// groups separated by `-` or spaces. Anything else is not an app password
/// and goes on to password tokens or passthrough.
pub fn canonical(password: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if password.len() > CHARS * 2 {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(CHARS));
    for &b in password {
        match b.to_ascii_lowercase() {
            b'-' | b' ' => continue,
            c if ALPHABET.contains(&c) => out.push(c),
            _ => return None,
        }
    }
    (out.len() == CHARS).then_some(out)
}

/// Whether a password has an app password's shape.
pub fn looks_like(password: &[u8]) -> bool {
    canonical(password).is_some()
}

/// The hash key: HMAC-SHA256 keyed with it.
#[derive(Clone)]
pub struct HashKey(Zeroizing<[u8; 32]>);

impl HashKey {
    /// A key from a secret value (`store.hash-key`) or the stored
    /// generated one: its SHA-256, so any length and alphabet work.
    pub fn from_secret(secret: &str) -> Self {
        Self(Zeroizing::new(Sha256::digest(secret.as_bytes()).into()))
    }

    /// The keyed hash of a password in canonical form.
    pub fn digest(&self, canonical: &[u8]) -> Digest32 {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(canonical);
        mac.finalize().into_bytes().into()
    }

    /// A key for another purpose, derived from this one (HMAC with the
    /// purpose as label): one configured secret, independent keys.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.digest(purpose.as_bytes()))
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// Constant-time equality of two hashes.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_have_the_shape_and_enough_entropy() {
        let p = generate().unwrap();
        let shown = p.expose();
        assert_eq!(shown.len(), CHARS + CHARS / GROUP - 1);
        assert_eq!(shown.split('-').count(), CHARS / GROUP);
        assert!(looks_like(shown.as_bytes()));
        let bare: String = shown.chars().filter(|&c| c != '-').collect();
        assert!(looks_like(bare.as_bytes()));
        assert!(looks_like(bare.to_uppercase().as_bytes()));
        assert!(looks_like(shown.replace('-', " ").as_bytes()));
        assert_ne!(generate().unwrap().expose(), shown);
    }

    #[test]
    fn other_passwords_are_not_app_passwords() {
        for p in [
            "secret",
            "",
            "abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-456",
            "abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-45678",
            "abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-4561",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
        ] {
            assert!(!looks_like(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"fooba"), "mzxw6ytb");
        assert_eq!(base32(&[0xff; 5]), "77777777");
    }

    #[test]
    fn keyed_hash_depends_on_key_and_password() {
        let k1 = HashKey::from_secret("one key of at least thirty-two chars");
        let k2 = HashKey::from_secret("another key of at least thirty-two");
        let p = canonical(b"abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-4567").unwrap();
        let q = canonical(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567").unwrap();
        assert!(same(&k1.digest(&p), &k1.digest(&q)));
        assert!(!same(&k1.digest(&p), &k2.digest(&p)));
        assert!(!same(
            &k1.digest(&p),
            &k1.digest(b"abcdefghijklmnopqrstuvwxyz234566")
        ));
    }
}
