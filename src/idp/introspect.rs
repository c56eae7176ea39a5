//! RFC 7662 token introspection: POST `token=…&token_type_hint=access_token`
//! with the configured client authentication (Stalwart's `auth.method`).
//! `active` must be true; an `exp` in the past or `nbf` in the future (beyond
//! the directory's clock skew), another `iss` or `aud` than configured, a
//! missing required scope or a sender-constrained token (`cnf`) is a
//! refused token. What an answer other than 200 means depends on whose
//! credential the endpoint judged: the user's token with `user-token`, the
//! proxy's own otherwise (see [`super::answer`]); the provider refusing
//! *our* credentials is a configuration problem, hence a temporary
//! failure, not a bad token.

use super::answer::Credential;
use super::{http, Error, Rejection};
use crate::config::IntrospectAuth;
use crate::secret::Secret;
use serde_json::{Map, Value};

/// What an introspection answer is checked against.
pub struct Expect<'a> {
    pub required_scope: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub leeway_secs: i64,
}

/// Posts the token; the answer's claims, unchecked (see [`check`]).
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    auth: &IntrospectAuth,
    token: &Secret,
) -> Result<Map<String, Value>, Error> {
    if credential(auth) == Credential::Token {
        super::userinfo::sendable(token)?;
    }
    let mut form = vec![
        ("token", token.expose()),
        ("token_type_hint", "access_token"),
    ];
    if let IntrospectAuth::ClientSecretPost { client_id, secret } = auth {
        form.push(("client_id", client_id));
        form.push(("client_secret", secret.expose()));
    }
    let request = client
        .post(url)
        .form(&form)
        .header("accept", "application/json");
    let request = match auth {
        IntrospectAuth::ClientSecretPost { .. } => request,
        IntrospectAuth::None => request,
        IntrospectAuth::Basic { username, secret } => {
            request.basic_auth(username, Some(secret.expose()))
        }
        IntrospectAuth::Token { token } => request.bearer_auth(token.expose()),
        IntrospectAuth::UserToken => request.bearer_auth(token.expose()),
    };
    let response = http::send(request).await?;
    http::claims(response, credential(auth), "introspection").await
}

/// Whose credential the introspection endpoint judges with `auth`.
pub fn credential(auth: &IntrospectAuth) -> Credential {
    match auth {
        IntrospectAuth::UserToken => Credential::Token,
        IntrospectAuth::None
        | IntrospectAuth::Basic { .. }
        | IntrospectAuth::Token { .. }
        | IntrospectAuth::ClientSecretPost { .. } => Credential::Proxy,
    }
}

/// The RFC 7662 checks on an introspection answer.
pub fn check(claims: &Map<String, Value>, now: i64, expect: &Expect<'_>) -> Result<(), Error> {
    let leeway = expect.leeway_secs;
    let reject = |why: &str| Err(Error::Rejected(Rejection::InvalidToken(why.to_string())));
    if claims.get("active").and_then(Value::as_bool) != Some(true) {
        return reject("introspection says the token is not active");
    }
    super::hygiene::check_cnf(claims)?;
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if exp + leeway < now {
            return reject("token expired");
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf - leeway > now {
            return reject("token not yet valid");
        }
    }
    if let Some(iss) = expect.issuer {
        if let Some(got) = claims.get("iss").and_then(Value::as_str) {
            if got.trim_end_matches('/') != iss.trim_end_matches('/') {
                return reject("wrong issuer (iss)");
            }
        }
    }
    if let Some(aud) = expect.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return reject("wrong audience (aud)");
        }
    }
    if let Some(scope) = expect.required_scope {
        if !super::jwt::has_scope(claims, scope) {
            return Err(Error::Rejected(Rejection::InsufficientScope(
                scope.to_string(),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn check(c: &Map<String, Value>, now: i64, scope: Option<&str>) -> Result<(), Error> {
        super::check(
            c,
            now,
            &Expect {
                required_scope: scope,
                audience: None,
                issuer: None,
                leeway_secs: 60,
            },
        )
    }

    #[test]
    fn issuer_and_audience() {
        let e = Expect {
            required_scope: None,
            audience: Some("urn:mail"),
            issuer: Some("https://idp/"),
            leeway_secs: 60,
        };
        let c = obj(json!({"active": true, "iss": "https://idp", "aud": ["x", "urn:mail"]}));
        assert!(super::check(&c, 0, &e).is_ok());
        let c = obj(json!({"active": true, "iss": "https://evil", "aud": "urn:mail"}));
        assert!(super::check(&c, 0, &e).is_err());
        let c = obj(json!({"active": true, "aud": "other"}));
        assert!(super::check(&c, 0, &e).is_err());
        let c = obj(json!({"active": true}));
        assert!(
            super::check(&c, 0, &e).is_err(),
            "aud required when configured"
        );
    }

    #[test]
    fn active_required() {
        assert!(check(&obj(json!({"active": true})), 1000, None).is_ok());
        assert!(check(&obj(json!({"active": false})), 1000, None).is_err());
        assert!(check(&obj(json!({"active": "true"})), 1000, None).is_err());
        assert!(check(&obj(json!({})), 1000, None).is_err());
    }

    #[test]
    fn exp_nbf_with_leeway() {
        assert!(check(&obj(json!({"active": true, "exp": 1000})), 1059, None).is_ok());
        assert!(check(&obj(json!({"active": true, "exp": 1000})), 1061, None).is_err());
        assert!(check(&obj(json!({"active": true, "nbf": 1100})), 1041, None).is_ok());
        assert!(check(&obj(json!({"active": true, "nbf": 1100})), 1039, None).is_err());
        assert!(check(&obj(json!({"active": true, "nbf": 2000})), 1000, None).is_err());
    }

    #[test]
    fn sender_constrained_refused() {
        let c = obj(
            json!({"active": true, "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
        );
        let err = check(&c, 0, None).unwrap_err();
        assert!(err.to_string().contains("sender-constrained"), "{err}");
        let c = obj(
            json!({"active": true, "cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
        );
        assert!(check(&c, 0, None).is_err());
    }

    #[test]
    fn scope() {
        let c = obj(json!({"active": true, "scope": "openid email"}));
        assert!(check(&c, 0, Some("email")).is_ok());
        assert!(matches!(
            check(&c, 0, Some("mail")),
            Err(Error::Rejected(Rejection::InsufficientScope(_)))
        ));
    }
}
