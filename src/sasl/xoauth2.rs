//! XOAUTH2 as Google documents it: `user=<user>` 0x01 `auth=Bearer <token>` 0x01 0x01.

use super::{bearer_token, BearerCredentials, Malformed};

pub fn parse(message: &[u8]) -> Result<BearerCredentials, Malformed> {
    let body = message
        .strip_suffix(b"\x01\x01")
        .ok_or(Malformed("message does not end with 0x01 0x01"))?;
    let mut user = None;
    let mut token = None;
    for pair in body.split(|&b| b == 0x01) {
        if let Some(v) = pair.strip_prefix(b"user=") {
            let v = std::str::from_utf8(v).map_err(|_| Malformed("user is not UTF-8"))?;
            if v.bytes().any(|b| b.is_ascii_control()) {
                return Err(Malformed("control character in user"));
            }
            user = Some(v.to_string());
        } else if let Some(v) = pair.strip_prefix(b"auth=") {
            token = Some(bearer_token(v)?);
        } else {
            return Err(Malformed("unexpected XOAUTH2 field"));
        }
    }
    let token = token.ok_or(Malformed("no auth field"))?;
    Ok(BearerCredentials {
        authzid: user.filter(|u| !u.is_empty()),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_example() {
        let c = parse(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01").unwrap();
        assert_eq!(c.authzid.as_deref(), Some("someuser@example.com"));
        assert_eq!(
            c.token.expose(),
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        );
    }

    #[test]
    fn malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"user=a\x01auth=Bearer t\x01",
            b"user=a\x01\x01",
            b"user=a\x01auth=Token t\x01\x01",
            b"user=a\x01host=b\x01auth=Bearer t\x01\x01",
            b"user=a\nb\x01auth=Bearer t\x01\x01",
        ];
        for m in bad {
            assert!(parse(m).is_err(), "accepted {m:?}");
        }
    }
}
