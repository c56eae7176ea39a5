//! OAUTHBEARER initial client response, RFC 7628 §3.1:
//!
//! ```text
//! kvsep = %x01
//! client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
//! gs2-header = gs2-cb-flag "," [ gs2-authzid ] ","     (RFC 5801)
//! kvpair = key "=" value kvsep
//! ```
//! `gs2-cb-flag` must be `n` or `y` (no channel binding; `p=` is refused).
//! `a=` is unescaped (`=2C` → `,`, `=3D` → `=`); a raw value is tolerated
//! (Roundcube sends it unescaped). `host` and `port` are ignored.
//! A lone `kvsep` is the dummy response after an error challenge.

use super::{bearer_token, BearerCredentials, Malformed};

pub fn parse(message: &[u8]) -> Result<BearerCredentials, Malformed> {
    let (header, rest) = split_gs2_header(message)?;
    let authzid = parse_gs2_header(header)?;
    let pairs = rest
        .strip_prefix(b"\x01")
        .ok_or(Malformed("no 0x01 after the GS2 header"))?;
    let pairs = pairs
        .strip_suffix(b"\x01\x01")
        .ok_or(Malformed("message does not end with 0x01 0x01"))?;
    let mut token = None;
    for pair in pairs.split(|&b| b == 0x01) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => return Err(Malformed("key/value pair without '='")),
        };
        if key.is_empty() || !key.iter().all(u8::is_ascii_alphabetic) {
            return Err(Malformed("invalid key in key/value pairs"));
        }
        if key == b"auth" {
            if token.is_some() {
                return Err(Malformed("auth given twice"));
            }
            token = Some(bearer_token(value)?);
        }
        // host, port and unknown keys are ignored (RFC 7628 §3.1).
    }
    let token = token.ok_or(Malformed("no auth key"))?;
    Ok(BearerCredentials { authzid, token })
}

/// Splits `cbflag,authzid,` from the rest: the header ends at the second comma.
fn split_gs2_header(message: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let first = message
        .iter()
        .position(|&b| b == b',')
        .ok_or(Malformed("no GS2 header"))?;
    let second = message[first + 1..]
        .iter()
        .position(|&b| b == b',')
        .map(|p| first + 1 + p)
        .ok_or(Malformed("incomplete GS2 header"))?;
    Ok((&message[..=second], &message[second + 1..]))
}

fn parse_gs2_header(header: &[u8]) -> Result<Option<String>, Malformed> {
    let header = std::str::from_utf8(header).map_err(|_| Malformed("GS2 header is not UTF-8"))?;
    let header = header
        .strip_suffix(',')
        .ok_or(Malformed("incomplete GS2 header"))?;
    let (flag, authzid) = header
        .split_once(',')
        .ok_or(Malformed("incomplete GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(Malformed("channel binding is not supported")),
        _ => return Err(Malformed("invalid gs2-cb-flag")),
    }
    if authzid.is_empty() {
        return Ok(None);
    }
    let value = authzid
        .strip_prefix("a=")
        .ok_or(Malformed("invalid gs2-authzid"))?;
    let value = value.replace("=2C", ",").replace("=3D", "=");
    if value.is_empty() {
        return Ok(None);
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(Malformed("control character in authzid"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7628_section_4_1_example() {
        // RFC 7628 §4.1, decoded.
        let m = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
        let c = parse(m).unwrap();
        assert_eq!(c.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(
            c.token.expose(),
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
        );
    }

    #[test]
    fn rfc7628_section_4_3_example_without_authzid_and_y_flag() {
        let m = b"y,,\x01host=server.example.com\x01port=587\x01auth=Bearer token-1\x01\x01";
        let c = parse(m).unwrap();
        assert_eq!(c.authzid, None);
        assert_eq!(c.token.expose(), "token-1");
    }

    #[test]
    fn escaped_and_raw_authzid() {
        let c = parse(b"n,a=we=2Cird=3Dname,\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(c.authzid.as_deref(), Some("we,ird=name"));
        // Raw '=' is tolerated.
        let c = parse(b"n,a=a=b@example.com,\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(c.authzid.as_deref(), Some("a=b@example.com"));
    }

    #[test]
    fn scheme_case_insensitive() {
        assert!(parse(b"n,,\x01auth=bearer t\x01\x01").is_ok());
        assert!(parse(b"n,,\x01auth=BEARER t\x01\x01").is_ok());
    }

    #[test]
    fn malformed_inputs() {
        let bad: &[&[u8]] = &[
            b"",
            b"\x01",
            b"n,,",
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
            b"x,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",
            b"n,u=x,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01noequals\x01\x01",
            b"n,a=x\ry,\x01auth=Bearer t\x01\x01",
            b"\xff,,\x01auth=Bearer t\x01\x01",
        ];
        for m in bad {
            assert!(parse(m).is_err(), "accepted {m:?}");
        }
    }
}
