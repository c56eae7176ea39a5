//! The error challenge sent before a bearer authentication fails
//! (RFC 7628 §3.2.2), in the OAUTHBEARER form or Google's XOAUTH2 form.

use super::Mechanism;
use serde_json::{json, Map, Value};

/// Why a bearer login failed, in RFC 7628 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InvalidToken,
    InsufficientScope,
    InvalidRequest,
}

impl Status {
    fn rfc7628(self) -> &'static str {
        match self {
            Status::InvalidToken => "invalid_token",
            Status::InsufficientScope => "insufficient_scope",
            Status::InvalidRequest => "invalid_request",
        }
    }
}

/// What the challenge says besides the status.
#[derive(Debug, Clone, Default)]
pub struct Hints<'a> {
    pub scope: Option<&'a str>,
    pub openid_configuration: Option<&'a str>,
    /// XOAUTH2's numeric status ("400", "401" or "403").
    pub xoauth2_status: &'a str,
}

/// The JSON document, not yet base64-encoded.
pub fn error_json(mech: Mechanism, status: Status, hints: &Hints<'_>) -> String {
    let mut doc = Map::new();
    match mech {
        Mechanism::XOAuth2 => {
            let code = if hints.xoauth2_status.is_empty() {
                "400"
            } else {
                hints.xoauth2_status
            };
            doc.insert("status".into(), json!(code));
            doc.insert("schemes".into(), json!("bearer"));
            doc.insert("scope".into(), json!(hints.scope.unwrap_or("")));
        }
        _ => {
            doc.insert("status".into(), json!(status.rfc7628()));
            if let Some(scope) = hints.scope {
                doc.insert("scope".into(), json!(scope));
            }
            if let Some(url) = hints.openid_configuration {
                doc.insert("openid-configuration".into(), json!(url));
            }
        }
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_form() {
        let h = Hints {
            scope: Some("email"),
            openid_configuration: Some("https://idp/.well-known/openid-configuration"),
            xoauth2_status: "400",
        };
        let v: Value = serde_json::from_str(&error_json(
            Mechanism::OAuthBearer,
            Status::InvalidToken,
            &h,
        ))
        .unwrap();
        assert_eq!(v["status"], "invalid_token");
        assert_eq!(v["scope"], "email");
        assert_eq!(
            v["openid-configuration"],
            "https://idp/.well-known/openid-configuration"
        );
    }

    #[test]
    fn xoauth2_form() {
        let h = Hints {
            scope: None,
            openid_configuration: None,
            xoauth2_status: "401",
        };
        let v: Value =
            serde_json::from_str(&error_json(Mechanism::XOAuth2, Status::InvalidToken, &h))
                .unwrap();
        assert_eq!(v["status"], "401");
        assert_eq!(v["schemes"], "bearer");
    }
}
