//! Logout tokens (Back-Channel Logout §2.6): every refusal, with keys
//! generated here by the `openssl` command.

use super::jwks::{Jwks, KeySet, Source};
use super::logout::{Error, EVENT};
use super::logout_verifier::Verifier;
use super::replay::Replay;
use super::Stats;
use crate::config::ASYMMETRIC_ALGORITHMS;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

const ISS: &str = "https://idp.test/realms/mail";
const AUD: &str = "mail-client";
const KID: &str = "logout-key";

/// The provider's key and another one nobody published.
fn keys() -> &'static (EncodingKey, EncodingKey) {
    static KEYS: OnceLock<(EncodingKey, EncodingKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |name: &str| {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .arg("-out")
                .arg(dir.path().join(name))
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "{out:?}");
            let pem = std::fs::read(dir.path().join(name)).expect("key");
            EncodingKey::from_ec_pem(&pem).expect("EC key")
        };
        (make("provider.pem"), make("forger.pem"))
    })
}

fn key_set() -> KeySet {
    let mut jwk = Jwk::from_encoding_key(&keys().0, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some(KID.into());
    let doc = json!({ "keys": [serde_json::to_value(jwk).expect("json")] });
    KeySet::parse(doc.as_object().expect("object"))
}

fn verifier() -> Verifier {
    // The key set is given to each call; the Jwks source is never fetched.
    let jwks = Arc::new(Jwks::new(
        Source::Url("http://127.0.0.1:9/jwks".into()),
        reqwest::Client::new(),
        Arc::new(Stats::default()),
        "test",
    ));
    let algorithms = ASYMMETRIC_ALGORITHMS.to_vec();
    Verifier::new(
        ISS,
        AUD,
        60,
        algorithms,
        None,
        jwks,
        Arc::new(Replay::default()),
    )
}

fn now() -> i64 {
    super::cache::unix_now()
}

fn claims() -> Map<String, Value> {
    json!({
        "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 120,
        "jti": format!("jti-{}", now_nanos()), "sub": "alice", "sid": "s-1",
        "events": { EVENT: {} },
    })
    .as_object()
    .cloned()
    .expect("object")
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn sign_with(claims: &Map<String, Value>, typ: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = typ.map(str::to_string);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn sign(claims: &Map<String, Value>) -> String {
    sign_with(claims, Some("logout+jwt"), &keys().0)
}

fn check(v: &Verifier, token: &str) -> Result<super::logout::Logout, Error> {
    v.verify_with(token, &key_set(), now())
}

fn refused(token: &str, why: &str) {
    match check(&verifier(), token) {
        Err(Error::Refused(r)) => assert!(r.contains(why), "refused for `{r}`, not `{why}`"),
        other => panic!("expected a refusal for `{why}`, got {other:?}"),
    }
}

fn without(name: &str) -> Map<String, Value> {
    let mut c = claims();
    c.remove(name);
    c
}

fn with(name: &str, value: Value) -> Map<String, Value> {
    let mut c = claims();
    c.insert(name.into(), value);
    c
}

#[test]
fn a_good_logout_token_names_sub_and_sid() {
    let logout = check(&verifier(), &sign(&claims())).expect("valid");
    assert_eq!(logout.sub.as_deref(), Some("alice"));
    assert_eq!(logout.sid.as_deref(), Some("s-1"));
}

#[test]
fn earlier_drafts_typ_jwt_or_none_and_no_exp_are_accepted() {
    for typ in [Some("JWT"), None, Some("application/logout+jwt")] {
        let token = sign_with(&without("exp"), typ, &keys().0);
        check(&verifier(), &token).unwrap_or_else(|e| panic!("{typ:?}: {e}"));
    }
    let only_sid = without("sub");
    assert_eq!(
        check(&verifier(), &sign(&only_sid)).expect("sid only").sub,
        None
    );
    let list_aud = with("aud", json!(["other", AUD]));
    check(&verifier(), &sign(&list_aud)).expect("aud list");
}

#[test]
fn bad_signature_is_refused() {
    refused(
        &sign_with(&claims(), Some("logout+jwt"), &keys().1),
        "bad signature",
    );
    let token = sign(&claims());
    let (head, sig) = token.rsplit_once('.').expect("jws");
    let mut other = claims();
    other.insert("sub".into(), json!("bob"));
    let body = sign(&other);
    let body = body.split('.').nth(1).expect("payload");
    let spliced = format!("{}.{body}.{sig}", head.split('.').next().expect("header"));
    refused(&spliced, "bad signature");
}

#[test]
fn alg_none_and_hmac_without_a_secret_are_refused() {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "logout+jwt"})),
        b64(&Value::Object(claims()))
    );
    refused(&none, "alg");
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("logout+jwt".into());
    let hs = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"public"))
        .expect("sign");
    refused(&hs, "algorithm not accepted");
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    refused(
        &sign(&with("iss", json!("https://evil.test"))),
        "wrong issuer",
    );
    refused(&sign(&without("iss")), "iss missing");
    refused(&sign(&with("aud", json!("other-app"))), "wrong audience");
    refused(&sign(&without("aud")), "aud missing");
    refused(&sign(&with("azp", json!("other-app"))), "azp");
}

#[test]
fn a_replayed_jti_is_refused() {
    let v = verifier();
    let token = sign(&claims());
    check(&v, &token).expect("first use");
    match check(&v, &token) {
        Err(Error::Refused(r)) => assert!(r.contains("jti already used"), "{r}"),
        other => panic!("{other:?}"),
    }
    refused(&sign(&without("jti")), "jti missing");
}

#[test]
fn a_refused_token_does_not_use_up_its_jti() {
    let v = verifier();
    let good = claims();
    let mut bad = good.clone();
    bad.insert("nonce".into(), json!("n"));
    assert!(check(&v, &sign(&bad)).is_err());
    check(&v, &sign(&good)).expect("the same jti, now valid");
}

#[test]
fn events_must_carry_the_logout_event_as_an_object() {
    refused(&sign(&without("events")), "events missing");
    refused(
        &sign(&with("events", json!({"other": {}}))),
        "lacks the back-channel",
    );
    refused(
        &sign(&with("events", json!({ EVENT: "yes" }))),
        "not a JSON object",
    );
    refused(
        &sign(&with("events", json!([EVENT]))),
        "events is not a JSON object",
    );
}

#[test]
fn a_nonce_is_refused() {
    refused(&sign(&with("nonce", json!("n-0"))), "nonce");
}

#[test]
fn expired_future_and_too_old_tokens_are_refused() {
    refused(&sign(&with("exp", json!(now() - 61))), "expired");
    refused(&sign(&with("iat", json!(now() + 600))), "future");
    refused(&sign(&without("iat")), "iat missing");
    let mut old = without("exp");
    old.insert("iat".into(), json!(now() - super::logout::MAX_AGE - 61));
    refused(&sign(&old), "too old");
}

#[test]
fn neither_sub_nor_sid_is_refused() {
    let mut c = without("sub");
    c.remove("sid");
    refused(&sign(&c), "neither sub nor sid");
    refused(&sign(&with("sub", json!(""))), "sub");
}

#[test]
fn other_token_types_and_extensions_are_refused() {
    refused(&sign_with(&claims(), Some("at+jwt"), &keys().0), "typ");
    refused("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "encrypted");
    refused("not a token", "well-formed");
}
