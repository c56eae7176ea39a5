//! Mapping the provider's claims to an identity through `fields.*`.
//!
//! A claim is untrusted input that ends up in IMAP and SMTP syntax upstream,
//! so a value with control characters, spaces or quotes is refused rather
//! than passed on.

use super::{Error, Rejection};
use crate::config::{Fields, IdentityCase, IdentityField};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// `email_verified` as the provider said it (absent: `None`). An
    /// unverified email is never a login identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// The routing claims (`fields.routing`) the token carries, as text.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, String>,
    /// The token's subject, session id (OpenID `sid`) and expiry, where the
    /// provider's answer names them: what back-channel logout, `who` and
    /// `session.at-expiry` go by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

impl Identity {
    pub fn get(&self, field: IdentityField) -> Option<&str> {
        match field {
            IdentityField::Username => self.username.as_deref(),
            IdentityField::Email => self.email.as_deref(),
        }
    }

    /// Whether a client-claimed authorization identity names this identity
    /// (the verified email or the username), compared as the upstream
    /// compares user names.
    pub fn matches(&self, authzid: &str, case: IdentityCase) -> bool {
        let email = self
            .email
            .as_ref()
            .filter(|_| self.email_verified != Some(false));
        [email, self.username.as_ref()]
            .into_iter()
            .flatten()
            .any(|v| case.same(authzid, v))
    }
}

/// Maps the claims and requires the `need` field.
pub fn map(
    claims: &Map<String, Value>,
    fields: &Fields,
    need: IdentityField,
) -> Result<Identity, Error> {
    let identity = identity(claims, fields)?;
    require(&identity, fields, need)?;
    Ok(identity)
}

/// Requires the field the upstream logs in with.
pub fn require(identity: &Identity, fields: &Fields, need: IdentityField) -> Result<(), Error> {
    if need == IdentityField::Email && identity.email_verified == Some(false) {
        return Err(Error::Rejected(Rejection::InvalidToken(
            "the provider says the email is not verified (email_verified is false)".into(),
        )));
    }
    if identity.get(need).is_none() {
        let claim = match need {
            IdentityField::Username => fields.username.clone(),
            IdentityField::Email => fields.email.clone(),
        };
        return Err(Error::Rejected(Rejection::MissingClaim(
            claim.unwrap_or_else(|| format!("{need:?}")),
        )));
    }
    Ok(())
}

/// Maps the claims through `fields.*`; a hostile value is refused.
pub fn identity(claims: &Map<String, Value>, fields: &Fields) -> Result<Identity, Error> {
    let get = |claim: &Option<String>| -> Result<Option<String>, Error> {
        let Some(name) = claim else { return Ok(None) };
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_safe_identity(s) => Ok(Some(s.clone())),
            Some(_) => Err(Error::Rejected(Rejection::MissingClaim(name.clone()))),
        }
    };
    let identity = Identity {
        username: get(&fields.username)?,
        email: get(&fields.email)?,
        full_name: fields
            .full_name
            .as_ref()
            .and_then(|n| claims.get(n))
            .and_then(Value::as_str)
            .map(str::to_string),
        email_verified: claims
            .get("email_verified")
            .filter(|v| !v.is_null())
            .map(|_| !super::hygiene::email_unverified(claims)),
        routing: fields
            .routing
            .iter()
            .filter_map(|name| {
                let text = match claims.get(name)? {
                    Value::Null => return None,
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((name.clone(), text))
            })
            .collect(),
        sub: text_claim(claims, "sub"),
        sid: text_claim(claims, "sid"),
        exp: claims.get("exp").and_then(Value::as_i64),
    };
    Ok(identity)
}

/// A string claim, bounded and printable (it is logged and listed).
fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 255 && !s.chars().any(char::is_control))
        .map(str::to_string)
}

/// A user name that is safe to put into an IMAP or SMTP command.
pub fn is_safe_identity(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '"' | '\\' | '\'' | '<' | '>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> Fields {
        Fields {
            email: Some("email".into()),
            username: Some("preferred_username".into()),
            full_name: Some("name".into()),
            routing: vec!["mailhost".into()],
        }
    }

    #[test]
    fn maps_claims() {
        let c = json!({"email": "alice@example.com", "preferred_username": "alice", "name": "Alice Example"});
        let id = map(c.as_object().unwrap(), &fields(), IdentityField::Email).unwrap();
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert_eq!(id.username.as_deref(), Some("alice"));
        assert_eq!(id.full_name.as_deref(), Some("Alice Example"));
        assert!(id.routing.is_empty());
        let case = IdentityCase::RequireLower;
        assert!(id.matches("ALICE@example.com", case));
        assert!(id.matches("alice", case));
        assert!(!id.matches("bob", case));
        assert!(!id.matches("ALICE@example.com", IdentityCase::Exact));
        assert!(id.matches("alice@example.com", IdentityCase::Exact));
        let c = json!({"email": "a@example.com", "mailhost": "mail2"});
        let id = map(c.as_object().unwrap(), &fields(), IdentityField::Email).unwrap();
        assert_eq!(
            id.routing.get("mailhost").map(String::as_str),
            Some("mail2")
        );
    }

    #[test]
    fn missing_needed_claim_names_it() {
        let c = json!({"preferred_username": "noemail"});
        let err = map(c.as_object().unwrap(), &fields(), IdentityField::Email).unwrap_err();
        assert!(err.to_string().contains("`email`"), "{err}");
        assert!(map(c.as_object().unwrap(), &fields(), IdentityField::Username).is_ok());
    }

    #[test]
    fn unverified_email_is_no_identity() {
        for unverified in [json!(false), json!("false"), json!("FALSE")] {
            let c = json!({"email": "bob@example.com", "email_verified": unverified, "preferred_username": "mallory"});
            let c = c.as_object().unwrap();
            let err = map(c, &fields(), IdentityField::Email).unwrap_err();
            assert!(err.to_string().contains("not verified"), "{err}");
            let id = map(c, &fields(), IdentityField::Username).unwrap();
            assert!(!id.matches("bob@example.com", IdentityCase::RequireLower));
            assert!(id.matches("mallory", IdentityCase::RequireLower));
        }
        for verified in [json!(true), json!("true"), json!(null)] {
            let c = json!({"email": "bob@example.com", "email_verified": verified});
            assert!(map(c.as_object().unwrap(), &fields(), IdentityField::Email).is_ok());
        }
    }

    #[test]
    fn hostile_claims_refused() {
        for bad in ["a\r\nb", "a b", "a\"b", "a\0b", "", "x\\y"] {
            let c = json!({"email": bad, "preferred_username": "ok"});
            assert!(
                map(c.as_object().unwrap(), &fields(), IdentityField::Email).is_err(),
                "{bad:?}"
            );
        }
        let c = json!({"email": 42});
        assert!(map(c.as_object().unwrap(), &fields(), IdentityField::Email).is_err());
    }
}
