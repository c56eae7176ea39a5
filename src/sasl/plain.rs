//! SASL PLAIN (RFC 4616) and the LOGIN mechanism's two answers: pure
//! decoding with one set of rules for every protocol.
//!
//! PLAIN is `authzid NUL authcid NUL password`: exactly three parts, a
//! non-empty authcid and password. LOGIN (no RFC; draft-murchison-sasl-login)
//! is a user name then a password, neither empty nor holding a NUL.

use super::Malformed;
use zeroize::Zeroizing;

/// The decoded credentials of PLAIN or LOGIN. The password is wiped when
/// this is dropped.
pub struct Credentials {
    /// PLAIN's authorization identity; empty when none was given (and for LOGIN).
    pub authzid: Vec<u8>,
    pub user: Vec<u8>,
    pub password: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &String::from_utf8_lossy(&self.authzid))
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Decodes a PLAIN message.
pub fn decode_plain(message: &[u8]) -> Result<Credentials, Malformed> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed(
            "PLAIN message is not authzid NUL user NUL password",
        ));
    };
    if password.contains(&0) {
        return Err(Malformed("PLAIN message has more than three parts"));
    }
    login_parts(authzid, user, password)
}

/// Checks the LOGIN mechanism's user name and password.
pub fn decode_login(user: &[u8], password: &[u8]) -> Result<Credentials, Malformed> {
    login_parts(b"", user, password)
}

fn login_parts(authzid: &[u8], user: &[u8], password: &[u8]) -> Result<Credentials, Malformed> {
    if user.is_empty() {
        return Err(Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(Malformed("empty password"));
    }
    if user.contains(&0) || password.contains(&0) {
        return Err(Malformed("NUL in a user name or password"));
    }
    Ok(Credentials {
        authzid: authzid.to_vec(),
        user: user.to_vec(),
        password: Zeroizing::new(password.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_has_three_parts_and_a_user_and_password() {
        let c = decode_plain(b"\0alice\0secret").unwrap();
        assert_eq!(
            (c.authzid.as_slice(), c.user.as_slice()),
            (&b""[..], &b"alice"[..])
        );
        assert_eq!(c.password.as_slice(), b"secret");
        let c = decode_plain(b"admin\0alice\0s").unwrap();
        assert_eq!(c.authzid, b"admin");
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0secret",
            b"\0alice\0",
            b"\0alice\0se\0cret",
        ] {
            assert!(decode_plain(bad).is_err(), "{bad:?}");
        }
        // Not UTF-8 is fine: a Latin-1 password passes through as bytes.
        assert!(decode_plain(b"\0alice\0p\xe4ss").is_ok());
    }

    #[test]
    fn login_needs_both_answers() {
        assert!(decode_login(b"alice", b"secret").is_ok());
        assert!(decode_login(b"", b"secret").is_err());
        assert!(decode_login(b"alice", b"").is_err());
        assert!(decode_login(b"al\0ice", b"secret").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = decode_plain(b"\0alice\0hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
