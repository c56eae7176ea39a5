//! RFC 7662 token introspection: POST `token=…&token_type_hint=access_token`
//! with the configured client authentication (Stalwart's `auth.method`).
//! `active` must be true; an `exp` in the past or `nbf` in the future is a
//! refused token. The provider refusing *our* credentials (401) is a
//! configuration problem, hence a temporary failure, not a bad token.

use super::{http, Error, Rejection};
use crate::config::IntrospectAuth;
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp` / `nbf`.
const LEEWAY_SECS: i64 = 60;

pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    auth: &IntrospectAuth,
    token: &Secret,
    required_scope: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    let form = [
        ("token", token.expose()),
        ("token_type_hint", "access_token"),
    ];
    let request = client
        .post(url)
        .form(&form)
        .header("accept", "application/json");
    let request = match auth {
        IntrospectAuth::None => request,
        IntrospectAuth::Basic { username, secret } => {
            request.basic_auth(username, Some(secret.expose()))
        }
        IntrospectAuth::Token { token } => request.bearer_auth(token.expose()),
        IntrospectAuth::UserToken => request.bearer_auth(token.expose()),
    };
    let response = http::send(request).await?;
    let status = response.status();
    if status.as_u16() != 200 {
        return Err(Error::Unavailable(format!(
            "introspection answered {status} (check the directory's auth.* settings)"
        )));
    }
    let claims = http::json_object(response).await?;
    check(&claims, now(), required_scope)?;
    Ok(claims)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The RFC 7662 checks on an introspection answer.
pub fn check(
    claims: &Map<String, Value>,
    now: i64,
    required_scope: Option<&str>,
) -> Result<(), Error> {
    let reject = |why: &str| Err(Error::Rejected(Rejection::InvalidToken(why.to_string())));
    if claims.get("active").and_then(Value::as_bool) != Some(true) {
        return reject("introspection says the token is not active");
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if exp + LEEWAY_SECS < now {
            return reject("token expired");
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if nbf - LEEWAY_SECS > now {
            return reject("token not yet valid");
        }
    }
    if let Some(scope) = required_scope {
        let granted = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        if !granted.split(' ').any(|s| s == scope) {
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
    fn scope() {
        let c = obj(json!({"active": true, "scope": "openid email"}));
        assert!(check(&c, 0, Some("email")).is_ok());
        assert!(matches!(
            check(&c, 0, Some("mail")),
            Err(Error::Rejected(Rejection::InsufficientScope(_)))
        ));
    }
}
