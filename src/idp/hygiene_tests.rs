//! The hygiene checks on their own (header, claims, UserInfo scopes), and
//! through the JWT validator with HS256 tokens built here byte by byte.

use super::hygiene::*;
use super::jwks::KeySet;
use super::jwt::{Expect, JwtValidator};
use super::{Error, Rejection};
use crate::config::JwtSettings;
use crate::secret::Secret;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn why(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Rejected(Rejection::InvalidToken(w))) => w,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn typ_must_be_an_access_tokens() {
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let h = obj(json!({"alg": "RS256", "typ": typ}));
        assert_eq!(
            check_header(&h, false).ok(),
            Some(Typ::AccessToken),
            "{typ}"
        );
        assert_eq!(check_header(&h, true).ok(), Some(Typ::AccessToken), "{typ}");
    }
    for h in [
        json!({"alg": "RS256", "typ": "JWT"}),
        json!({"alg": "RS256", "typ": "application/jwt"}),
        json!({"alg": "RS256"}),
    ] {
        let h = obj(h);
        assert!(why(check_header(&h, false)).contains("jwt.allow-untyped"));
        assert_eq!(check_header(&h, true).ok(), Some(Typ::Untyped));
    }
    let w = why(check_header(
        &obj(json!({"alg": "RS256", "typ": "JWT"})),
        false,
    ));
    assert!(
        w.starts_with("JWT typ \"JWT\" is not an access token"),
        "{w}"
    );
    // Other kinds of JWT, even with allow-untyped.
    for typ in [
        "logout+jwt",
        "token-introspection+jwt",
        "dpop+jwt",
        "secevent+jwt",
    ] {
        let h = obj(json!({"alg": "RS256", "typ": typ}));
        assert!(why(check_header(&h, true)).contains("is not an access token"));
    }
    let h = obj(json!({"alg": "RS256", "typ": 7}));
    why(check_header(&h, true));
    // A hostile typ is shown escaped and short.
    let h = obj(json!({"alg": "RS256", "typ": format!("x\r\n{}", "y".repeat(500))}));
    let w = why(check_header(&h, true));
    assert!(!w.contains('\n') && w.len() < 200, "{w}");
}

#[test]
fn crit_and_unencoded_payload_refused() {
    for h in [
        json!({"alg": "HS256", "typ": "at+jwt", "crit": ["exp"]}),
        json!({"alg": "HS256", "typ": "at+jwt", "crit": []}),
        json!({"alg": "HS256", "typ": "at+jwt", "crit": ["b64"], "b64": false}),
    ] {
        assert!(why(check_header(&obj(h), true)).contains("crit"));
    }
    let h = obj(json!({"alg": "HS256", "typ": "at+jwt", "b64": false}));
    assert!(why(check_header(&h, true)).contains("b64"));
    let h = obj(json!({"alg": "HS256", "typ": "at+jwt", "b64": true}));
    assert!(check_header(&h, false).is_ok());
}

#[test]
fn id_tokens_refused() {
    let base = json!({"sub": "alice", "aud": "mail-client", "exp": 1});
    for (k, v) in [
        ("nonce", json!("n-0S6_WzA2Mj")),
        ("at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ")),
        ("c_hash", json!("LDktKdoQak3Pk0cnXxCltA")),
        ("typ", json!("ID")),
    ] {
        let mut c = obj(base.clone());
        c.insert(k.into(), v);
        for typ in [Typ::AccessToken, Typ::Untyped] {
            let w = why(check_claims(&c, typ));
            assert!(w.starts_with("an ID token is not an access token"), "{w}");
        }
    }
    // Untyped, `aud` is its own `azp` (Keycloak's ID token, without nonce).
    let c = obj(json!({"sub": "a", "aud": "mail-client", "azp": "mail-client"}));
    assert!(why(check_claims(&c, Typ::Untyped)).contains("azp"));
    let c = obj(json!({"sub": "a", "aud": ["mail-client"], "azp": "mail-client"}));
    why(check_claims(&c, Typ::Untyped));
    // Typed at+jwt, or an access token for a resource: fine.
    let c = obj(json!({"sub": "a", "aud": "mail-client", "azp": "mail-client"}));
    assert!(check_claims(&c, Typ::AccessToken).is_ok());
    let c = obj(
        json!({"sub": "a", "aud": ["urn:mail", "account"], "azp": "mail-client", "typ": "Bearer"}),
    );
    assert!(check_claims(&c, Typ::Untyped).is_ok());
}

#[test]
fn sender_constrained_refused() {
    for cnf in [
        json!({"jkt": "0ZcOCORZNYy"}),
        json!({"x5t#S256": "bwcK0esc"}),
        json!("x"),
    ] {
        let c = obj(json!({"sub": "a", "cnf": cnf}));
        assert!(why(check_claims(&c, Typ::AccessToken)).contains("sender-constrained"));
    }
}

#[test]
fn email_verified() {
    assert!(email_unverified(&obj(json!({"email_verified": false}))));
    assert!(email_unverified(&obj(json!({"email_verified": "false"}))));
    assert!(!email_unverified(&obj(json!({"email_verified": true}))));
    assert!(!email_unverified(&obj(json!({"email_verified": "true"}))));
    assert!(!email_unverified(&obj(json!({}))));
}

#[test]
fn userinfo_scopes_by_released_claims() {
    let openid_only = obj(json!({"sub": "alice"}));
    assert!(userinfo_has_scope(&openid_only, "openid"));
    for scope in ["email", "profile", "address", "phone"] {
        assert!(!userinfo_has_scope(&openid_only, scope), "{scope}");
    }
    let full = obj(
        json!({"sub": "a", "email": "a@x", "preferred_username": "a",
        "address": {"country": "DE"}, "phone_number": "+49"}),
    );
    for scope in ["openid", "email", "profile", "address", "phone"] {
        assert!(userinfo_has_scope(&full, scope), "{scope}");
    }
    let null_email = obj(json!({"sub": "a", "email": null}));
    assert!(!userinfo_has_scope(&null_email, "email"));
    // An answer that names its scope is read by it.
    let scoped = obj(json!({"sub": "a", "email": "a@x", "scope": "openid profile"}));
    assert!(!userinfo_has_scope(&scoped, "email"));
    assert!(userinfo_has_scope(&scoped, "profile"));
}

#[test]
fn raw_header_is_bounded_and_parsed() {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let h = raw_header(&format!("{}.e30.x", b64(r#"{"alg":"HS256","crit":["x"]}"#))).unwrap();
    assert_eq!(h["crit"], json!(["x"]));
    for bad in [
        String::new(),
        "%%%.e30.x".into(),
        format!("{}.e30.x", b64("[1,2]")),
        format!("{}.e30.x", b64("not json")),
        format!("{}.e30.x", "A".repeat(MAX_HEADER + 4)),
    ] {
        why(raw_header(&bad));
    }
}

/// A signed HS256 token with any header, through the whole validator.
fn signed(header: Value, claims: Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{input}.{sig}")
}

fn validator(allow_untyped: bool) -> JwtValidator {
    let settings = JwtSettings {
        jwks_url: None,
        algorithms: vec![Algorithm::HS256],
        secret: Some(Secret::new(SECRET)),
        allow_untyped,
        introspect: None,
    };
    let expect = Expect {
        issuer: Some("https://idp.test"),
        audience: Some("urn:mail"),
        leeway_secs: 60,
        required_scope: Some("email"),
    };
    JwtValidator::new(&settings, &expect, None)
}

#[test]
fn through_the_validator() {
    let set = KeySet::parse(&Map::new());
    let claims = json!({"iss": "https://idp.test", "aud": "urn:mail", "scope": "openid email",
        "exp": super::cache::unix_now() + 300, "email": "alice@example.com"});
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let typed = json!({"alg": "HS256", "typ": "at+jwt"});
    let v = validator(false);
    assert!(v
        .verify_static(&signed(typed.clone(), claims.clone()), &set)
        .is_ok());
    let crit = json!({"alg": "HS256", "typ": "at+jwt", "crit": ["urn:x"], "urn:x": 1});
    assert!(why(v.verify_static(&signed(crit, claims.clone()), &set)).contains("crit"));
    let cnf = with("cnf", json!({"jkt": "0ZcOCORZNYy"}));
    assert!(why(v.verify_static(&signed(typed.clone(), cnf), &set)).contains("cnf"));
    let nonce = with("nonce", json!("n"));
    assert!(why(v.verify_static(&signed(typed, nonce), &set)).contains("ID token"));
    let untyped = json!({"alg": "HS256", "typ": "JWT"});
    let w = why(v.verify_static(&signed(untyped.clone(), claims.clone()), &set));
    assert!(w.contains("allow-untyped"), "{w}");
    // An untyped ID token is named as such (its claims say what it is).
    let id = with("nonce", json!("n"));
    let w = why(v.verify_static(&signed(json!({"alg": "HS256"}), id.clone()), &set));
    assert!(
        w.starts_with("an ID token is not an access token (it has `nonce`"),
        "{w}"
    );
    // ... but a `crit` refusal stays one.
    let crit = json!({"alg": "HS256", "crit": ["x"]});
    assert!(why(v.verify_static(&signed(crit, id), &set)).contains("crit"));
    assert!(validator(true)
        .verify_static(&signed(untyped, claims), &set)
        .is_ok());
}
