//! What a provider's answer other than 200 means, decided by whose
//! credential the endpoint judged (issue 11, finding 4).
//!
//! - [`Credential::Token`]: the user's token authenticates the request
//!   (UserInfo, OpenID Connect Core §5.3.3; introspection with
//!   `auth.method = "user-token"`). A 401/403, a 400 (RFC 6750 §3.1: the
//!   only part of the request the client controls is the token), a
//!   413/431 (too large to be a token the provider issued) or an RFC 6750
//!   `error="invalid_token"` with any status means the token is refused.
//! - [`Credential::Proxy`]: the proxy's own credential does (introspection
//!   with `basic`, `token`, `client-secret-post`, `none`). RFC 7662 §2.2
//!   answers a bad token with 200 `active: false`, so a 401/403 (or a 400
//!   `invalid_client`, RFC 6749 §5.2) refuses *the proxy*: a configuration
//!   problem, reported as the provider being unavailable with a message
//!   that says so. A 413 is about the token (the only variable part of the
//!   body).
//!
//! Everything else (404, 405, 429, 5xx, any other status) is unavailable:
//! the endpoint is not answering as configured, and telling every client
//! that its token is bad would be worse than a temporary failure.

use super::{Error, Rejection};

/// Whose credential the endpoint judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The user's token itself.
    Token,
    /// The proxy's own client credential (or none at all).
    Proxy,
}

/// The meaning of a non-200 answer from the endpoint `what` ("userinfo",
/// "introspection"): `error` is the RFC 6750 / RFC 6749 error code from
/// `WWW-Authenticate` or the JSON body, when there was one.
pub fn meaning(credential: Credential, what: &str, status: u16, error: Option<&str>) -> Error {
    match credential {
        Credential::Token => judged_by_token(what, status, error),
        Credential::Proxy => judged_by_proxy(what, status, error),
    }
}

fn answered(what: &str, status: u16, error: Option<&str>) -> String {
    match error {
        Some(e) => format!("{what} answered {status} ({})", printable(e)),
        None => format!("{what} answered {status}"),
    }
}

/// The user's token was the credential.
pub fn judged_by_token(what: &str, status: u16, error: Option<&str>) -> Error {
    let why = answered(what, status, error);
    match (status, error) {
        (_, Some("invalid_token")) | (400 | 401 | 403 | 413 | 431, _) => {
            Error::Rejected(Rejection::InvalidToken(why))
        }
        _ => Error::Unavailable(why),
    }
}

/// The proxy's own credential was.
pub fn judged_by_proxy(what: &str, status: u16, error: Option<&str>) -> Error {
    let why = answered(what, status, error);
    match (status, error) {
        (401 | 403, _) | (400, Some("invalid_client")) => Error::Unavailable(format!(
            "the provider refused the proxy's own credentials; check auth.* ({why})"
        )),
        (413, _) => Error::Rejected(Rejection::InvalidToken(why)),
        _ => Error::Unavailable(why),
    }
}

/// The `error` parameter of a `WWW-Authenticate` value (RFC 6750 §3;
/// RFC 9110 §11.6.1 syntax: `scheme name=token / name="quoted"`, ...).
pub fn challenge_error(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let name = &rest[..end];
        rest = rest[end..].trim_start_matches([' ', '\t']);
        let Some(after) = rest.strip_prefix('=') else {
            continue; // an auth scheme or a token68
        };
        let after = after.trim_start_matches([' ', '\t']);
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        if name.eq_ignore_ascii_case("error") {
            return Some(value);
        }
        rest = tail;
    }
}

/// A quoted-string's value (after its opening quote) and what follows it.
fn unquote(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &s[i + 1..]),
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            c => value.push(c),
        }
    }
    (value, "")
}

/// Provider text made safe for a log line: short, no control characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Credential::{Proxy, Token};

    #[derive(Debug, PartialEq)]
    enum Is {
        Refused,
        Unavailable,
        ProxyRefused,
    }

    fn is(e: Error) -> Is {
        match e {
            Error::Rejected(_) => Is::Refused,
            Error::Unavailable(w) if w.contains("proxy's own credentials") => Is::ProxyRefused,
            Error::Unavailable(_) => Is::Unavailable,
        }
    }

    #[test]
    fn the_mapping_table() {
        use Is::*;
        let cases: &[(Credential, u16, Option<&str>, Is)] = &[
            (Token, 401, None, Refused),
            (Token, 401, Some("invalid_token"), Refused),
            (Token, 403, None, Refused),
            (Token, 403, Some("insufficient_scope"), Refused),
            (Token, 400, None, Refused),
            (Token, 400, Some("invalid_request"), Refused),
            (Token, 413, None, Refused),
            (Token, 431, None, Refused),
            (Token, 404, Some("invalid_token"), Refused),
            (Token, 500, Some("invalid_token"), Refused),
            (Token, 404, None, Unavailable),
            (Token, 405, None, Unavailable),
            (Token, 429, None, Unavailable),
            (Token, 500, None, Unavailable),
            (Token, 502, Some("server_error"), Unavailable),
            (Token, 503, None, Unavailable),
            (Token, 302, None, Unavailable),
            (Token, 204, None, Unavailable),
            (Proxy, 401, None, ProxyRefused),
            (Proxy, 401, Some("invalid_client"), ProxyRefused),
            (Proxy, 401, Some("invalid_token"), ProxyRefused),
            (Proxy, 403, None, ProxyRefused),
            (Proxy, 400, Some("invalid_client"), ProxyRefused),
            (Proxy, 400, Some("invalid_request"), Unavailable),
            (Proxy, 400, Some("invalid_token"), Unavailable),
            (Proxy, 400, None, Unavailable),
            (Proxy, 413, None, Refused),
            (Proxy, 431, None, Unavailable),
            (Proxy, 404, None, Unavailable),
            (Proxy, 429, None, Unavailable),
            (Proxy, 500, None, Unavailable),
            (Proxy, 503, Some("temporarily_unavailable"), Unavailable),
        ];
        for (credential, status, error, want) in cases {
            let got = is(meaning(*credential, "x", *status, *error));
            assert_eq!(&got, want, "{credential:?} {status} {error:?}");
        }
    }

    #[test]
    fn messages_name_the_answer_and_the_fix() {
        let e = judged_by_proxy("introspection", 401, Some("invalid_client"));
        assert_eq!(
            e.reason(),
            "the provider refused the proxy's own credentials; \
             check auth.* (introspection answered 401 (invalid_client))"
        );
        let e = judged_by_token("userinfo", 401, Some("bad\r\nthing"));
        assert_eq!(e.reason(), "userinfo answered 401 (badthing)");
    }

    #[test]
    fn challenge_errors() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"Bearer error="invalid_token""#, Some("invalid_token")),
            (
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
                Some("invalid_token"),
            ),
            (
                r#"Bearer error_description="no error=here", error="insufficient_scope""#,
                Some("insufficient_scope"),
            ),
            ("Bearer error=invalid_token", Some("invalid_token")),
            (
                "bearer ERROR = invalid_request , realm=x",
                Some("invalid_request"),
            ),
            (r#"Bearer error="a\"b""#, Some("a\"b")),
            (
                r#"Basic realm="x", Bearer error="invalid_token""#,
                Some("invalid_token"),
            ),
            ("Bearer", None),
            (r#"Bearer realm="x""#, None),
            ("", None),
            (r#"Bearer error="unterminated"#, Some("unterminated")),
            ("Negotiate abc==", None),
        ];
        for (header, want) in cases {
            assert_eq!(challenge_error(header).as_deref(), *want, "{header}");
        }
    }
}
