//! Per-algorithm tests with keys generated here (by the `openssl` command),
//! and every way a token must be refused.

use super::jwks::KeySet;
use super::jwt::*;
use super::{Error, Rejection};
use crate::config::{JwtSettings, ASYMMETRIC_ALGORITHMS};
use crate::secret::Secret;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use std::process::Command;
use std::sync::OnceLock;

const ISS: &str = "https://idp.test/realms/mail";
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

struct Keys {
    rsa: EncodingKey,
    rsa_public_pem: Vec<u8>,
    p256: EncodingKey,
    p384: EncodingKey,
    ed25519: EncodingKey,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pem",
            ],
        );
        openssl(
            d,
            &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "p256.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "p384.pem",
            ],
        );
        openssl(d, &["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"]);
        let read = |f: &str| std::fs::read(d.join(f)).expect("key file");
        Keys {
            rsa: EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("rsa"),
            rsa_public_pem: read("rsa.pub.pem"),
            p256: EncodingKey::from_ec_pem(&read("p256.pem")).expect("p256"),
            p384: EncodingKey::from_ec_pem(&read("p384.pem")).expect("p384"),
            ed25519: EncodingKey::from_ed_pem(&read("ed.pem")).expect("ed25519"),
        }
    })
}

fn signing_key(alg: Algorithm) -> EncodingKey {
    use Algorithm::*;
    let k = keys();
    match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(SECRET.as_bytes()),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => k.rsa.clone(),
        ES256 => k.p256.clone(),
        ES384 => k.p384.clone(),
        _ => k.ed25519.clone(),
    }
}

fn kid(alg: Algorithm) -> String {
    format!("kid-{alg:?}")
}

/// A key set publishing every asymmetric key, one entry per algorithm.
fn key_set() -> KeySet {
    let keys: Vec<Value> = ASYMMETRIC_ALGORITHMS
        .iter()
        .map(|&alg| {
            let mut jwk = Jwk::from_encoding_key(&signing_key(alg), alg).expect("jwk");
            jwk.common.key_id = Some(kid(alg));
            serde_json::to_value(jwk).expect("json")
        })
        .collect();
    KeySet::parse(json!({ "keys": keys }).as_object().expect("object"))
}

fn now() -> i64 {
    super::cache::unix_now()
}

fn claims() -> Map<String, Value> {
    json!({
        "iss": ISS, "aud": "urn:mail", "sub": "alice", "exp": now() + 300, "nbf": now() - 10,
        "iat": now(), "scope": "openid email", "email": "alice@example.com", "username": "alice",
    })
    .as_object()
    .cloned()
    .expect("object")
}

fn sign(alg: Algorithm, kid: Option<String>, claims: &Map<String, Value>) -> String {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &signing_key(alg)).expect("sign")
}

fn token(alg: Algorithm) -> String {
    sign(alg, Some(kid(alg)), &claims())
}

fn validator(algorithms: &[Algorithm], scope: Option<&str>) -> JwtValidator {
    let settings = JwtSettings {
        jwks_url: None,
        algorithms: algorithms.to_vec(),
        secret: Some(Secret::new(SECRET)),
        allow_untyped: false,
        introspect: None,
    };
    let expect = Expect {
        issuer: Some(ISS),
        audience: Some("urn:mail"),
        leeway_secs: 60,
        required_scope: scope,
    };
    JwtValidator::new(&settings, &expect, None)
}

fn all() -> Vec<Algorithm> {
    let mut v = ASYMMETRIC_ALGORITHMS.to_vec();
    v.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
    v
}

fn refused(r: Result<Map<String, Value>, Error>) -> String {
    match r {
        Err(Error::Rejected(Rejection::InvalidToken(why))) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[test]
fn every_algorithm_verifies() {
    let set = key_set();
    let v = validator(&all(), Some("email"));
    for alg in all() {
        let c = v
            .verify_static(&token(alg), &set)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(c["email"], "alice@example.com", "{alg:?}");
    }
}

#[test]
fn only_configured_algorithms() {
    let set = key_set();
    let v = validator(&[Algorithm::ES256], None);
    assert!(v.verify_static(&token(Algorithm::ES256), &set).is_ok());
    let why = refused(v.verify_static(&token(Algorithm::RS256), &set));
    assert!(why.contains("not accepted"), "{why}");
}

#[test]
fn expired_and_not_yet_valid() {
    let set = key_set();
    let v = validator(&all(), None);
    let with = |k: &str, at: i64| {
        let mut c = claims();
        c.insert(k.into(), json!(at));
        sign(Algorithm::RS256, Some(kid(Algorithm::RS256)), &c)
    };
    assert!(refused(v.verify_static(&with("exp", now() - 120), &set)).contains("expired"));
    assert!(
        v.verify_static(&with("exp", now() - 30), &set).is_ok(),
        "inside the skew"
    );
    assert!(refused(v.verify_static(&with("nbf", now() + 120), &set)).contains("not yet valid"));
    assert!(
        v.verify_static(&with("nbf", now() + 30), &set).is_ok(),
        "inside the skew"
    );
    let mut c = claims();
    c.remove("exp");
    let no_exp = sign(Algorithm::ES256, Some(kid(Algorithm::ES256)), &c);
    assert!(refused(v.verify_static(&no_exp, &set)).contains("exp"));
}

#[test]
fn wrong_issuer_and_audience() {
    let set = key_set();
    let v = validator(&all(), None);
    for (k, value, why) in [
        ("iss", json!("https://evil.test"), "issuer"),
        ("aud", json!("urn:other"), "audience"),
        ("aud", json!(["urn:other", "urn:x"]), "audience"),
    ] {
        let mut c = claims();
        c.insert(k.into(), value);
        let t = sign(Algorithm::PS256, Some(kid(Algorithm::PS256)), &c);
        assert!(refused(v.verify_static(&t, &set)).contains(why), "{k}");
    }
    let mut c = claims();
    c.remove("aud");
    let t = sign(Algorithm::PS256, Some(kid(Algorithm::PS256)), &c);
    assert!(refused(v.verify_static(&t, &set)).contains("aud"));
    // A trailing slash on the issuer is the same issuer.
    let mut c = claims();
    c.insert("iss".into(), json!(format!("{ISS}/")));
    let t = sign(Algorithm::PS256, Some(kid(Algorithm::PS256)), &c);
    assert!(v.verify_static(&t, &set).is_ok());
}

#[test]
fn missing_scope() {
    let set = key_set();
    let v = validator(&all(), Some("mail"));
    assert!(matches!(
        v.verify_static(&token(Algorithm::EdDSA), &set),
        Err(Error::Rejected(Rejection::InsufficientScope(s))) if s == "mail"
    ));
    let mut c = claims();
    c.remove("scope");
    c.insert("scp".into(), json!(["openid", "mail"]));
    let t = sign(Algorithm::EdDSA, Some(kid(Algorithm::EdDSA)), &c);
    assert!(v.verify_static(&t, &set).is_ok(), "scp list");
}

#[test]
fn tampered_signature_and_payload() {
    let set = key_set();
    let v = validator(&all(), None);
    for alg in [
        Algorithm::RS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS512,
    ] {
        let t = token(alg);
        let (head, sig) = t.rsplit_once('.').expect("three parts");
        // Another signature of the right length.
        let mut bytes = sig.as_bytes().to_vec();
        bytes[4] = if bytes[4] == b'A' { b'B' } else { b'A' };
        let forged = format!("{head}.{}", String::from_utf8(bytes).expect("ascii"));
        assert!(
            refused(v.verify_static(&forged, &set)).contains("signature"),
            "{alg:?}"
        );
        // Another payload under the original signature.
        let mut c = claims();
        c.insert("email".into(), json!("mallory@example.com"));
        let other = sign(alg, Some(kid(alg)), &c);
        let (other_head, _) = other.rsplit_once('.').expect("three parts");
        let spliced = format!("{other_head}.{sig}");
        assert!(
            refused(v.verify_static(&spliced, &set)).contains("signature"),
            "{alg:?}"
        );
    }
}

fn b64url(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn alg_none_refused() {
    let set = key_set();
    let v = validator(&all(), None);
    let payload = b64url(&Value::Object(claims()));
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "NONE", "kid": kid(Algorithm::RS256)}),
    ] {
        for sig in ["", "AAAA"] {
            let t = format!("{}.{payload}.{sig}", b64url(&header));
            refused(v.verify_static(&t, &set));
        }
    }
}

/// The classic confusion: an HS256 token whose HMAC key is the provider's
/// public RSA key (which anyone can fetch), naming the RSA key's kid.
#[test]
fn key_confusion_refused() {
    let set = key_set();
    let header = {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid(Algorithm::RS256));
        h
    };
    let forged = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&keys().rsa_public_pem),
    )
    .expect("sign");
    // Asymmetric only (the default): HS256 is not accepted at all.
    let v = validator(ASYMMETRIC_ALGORITHMS, None);
    refused(v.verify_static(&forged, &set));
    // HS256 accepted too: checked with the configured secret only.
    let v = validator(&all(), None);
    assert!(refused(v.verify_static(&forged, &set)).contains("signature"));
    // Asked directly against the key set, the RSA key is not an HS key.
    let why = match v.verify_with(
        &forged,
        Algorithm::HS256,
        Some(&kid(Algorithm::RS256)),
        &set,
    ) {
        Err(Verdict::Error(Error::Rejected(Rejection::InvalidToken(w)))) => w,
        other => panic!("{other:?}"),
    };
    assert!(why.contains("does not belong"), "{why}");
    // An RS256 token naming an EC key's kid, and a PS256 token naming a
    // key published for RS256 only.
    let t = sign(Algorithm::RS256, Some(kid(Algorithm::ES256)), &claims());
    assert!(refused(v.verify_static(&t, &set)).contains("does not belong"));
    let t = sign(Algorithm::PS256, Some(kid(Algorithm::RS256)), &claims());
    assert!(refused(v.verify_static(&t, &set)).contains("does not belong"));
    // Symmetric keys in a published key set are never used.
    let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}]});
    assert!(KeySet::parse(oct.as_object().expect("object")).is_empty());
}

#[test]
fn unknown_kid_asks_for_a_refresh() {
    let set = key_set();
    let v = validator(&all(), None);
    let t = sign(Algorithm::RS256, Some("rotated".into()), &claims());
    assert!(matches!(
        v.verify_with(&t, Algorithm::RS256, Some("rotated"), &set),
        Err(Verdict::UnknownKid)
    ));
    // Without a kid, the one key that fits the algorithm is used.
    let t = sign(Algorithm::ES384, None, &claims());
    assert!(v.verify_static(&t, &set).is_ok());
    // Several RSA keys fit RS256? Here one key per alg is published, and
    // the RS256 one is the only RSA key marked RS256.
    let t = sign(Algorithm::RS256, None, &claims());
    assert!(v.verify_static(&t, &set).is_ok());
}

#[test]
fn garbage_refused_without_panic() {
    let set = key_set();
    let v = validator(&all(), None);
    for t in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJ.eyJ.x",
        "eyJhbGciOiJSUzI1NiJ9.%%%.x",
        &"A".repeat(5000),
    ] {
        refused(v.verify_static(t, &set));
    }
}

#[test]
fn shape_and_unverified_issuer() {
    let t = token(Algorithm::RS256);
    assert!(looks_like_jwt(&t));
    assert_eq!(unverified_issuer(&t).as_deref(), Some(ISS));
    for not in [
        "opaque-token",
        "a.b.c",
        "eyJx.y",
        "eyJ.a b.c",
        "alice-app-password",
    ] {
        assert!(!looks_like_jwt(not), "{not}");
        assert_eq!(unverified_issuer(not), None);
    }
}
