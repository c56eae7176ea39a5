//! Checking an ID token (OpenID Connect Core 1.0 §3.1.3.7): the signature
//! against the provider's JWKS (the key-set code of [`crate::idp::jwks`],
//! with its algorithm-confusion rules), then `iss`, `aud` (and `azp` when
//! there are several audiences), `exp`, `iat` and `nonce`.

use super::flow::Refusal;
use crate::config::ASYMMETRIC_ALGORITHMS;
use crate::idp::jwks::{Jwks, KeySet, Lookup};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// What the ID token must say.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub skew_secs: i64,
}

/// Verifies `token` with the provider's keys (one refetch for an unknown
/// `kid`) and checks its claims at `now`.
pub async fn verify(
    token: &str,
    jwks: &Jwks,
    expect: &Expect<'_>,
    now: i64,
) -> Result<Map<String, Value>, Refusal> {
    let (alg, kid) = header(token)?;
    let unavailable = |e: crate::idp::Error| Refusal::Unavailable(e.reason());
    let set = jwks.loaded().await.map_err(unavailable)?;
    let claims = match signed(token, alg, kid.as_deref(), &set) {
        Err(Signed::UnknownKid) => {
            let fresh = jwks
                .refresh_for_unknown_kid(&set)
                .await
                .map_err(unavailable)?
                .ok_or(Refusal::IdToken("signed with an unknown key"))?;
            signed(token, alg, kid.as_deref(), &fresh).map_err(Signed::refusal)?
        }
        other => other.map_err(Signed::refusal)?,
    };
    check_claims(&claims, expect, now)?;
    Ok(claims)
}

/// The same against a given key set, without I/O (tests).
pub fn verify_with(
    token: &str,
    set: &KeySet,
    expect: &Expect<'_>,
    now: i64,
) -> Result<Map<String, Value>, Refusal> {
    let (alg, kid) = header(token)?;
    let claims = signed(token, alg, kid.as_deref(), set).map_err(Signed::refusal)?;
    check_claims(&claims, expect, now)?;
    Ok(claims)
}

fn header(token: &str) -> Result<(Algorithm, Option<String>), Refusal> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| Refusal::IdToken("not a usable JWT"))?;
    if !ASYMMETRIC_ALGORITHMS.contains(&header.alg) {
        return Err(Refusal::IdToken("signing algorithm not accepted"));
    }
    Ok((header.alg, header.kid))
}

enum Signed {
    UnknownKid,
    Refused(&'static str),
}

impl Signed {
    fn refusal(self) -> Refusal {
        match self {
            Signed::UnknownKid => Refusal::IdToken("signed with an unknown key"),
            Signed::Refused(why) => Refusal::IdToken(why),
        }
    }
}

fn signed(
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
    set: &KeySet,
) -> Result<Map<String, Value>, Signed> {
    let key: &DecodingKey = match set.find(kid, alg) {
        Lookup::Found(k) => &k.key,
        Lookup::Unknown => return Err(Signed::UnknownKid),
        Lookup::Mismatch => return Err(Signed::Refused("key of another algorithm")),
        Lookup::Ambiguous => return Err(Signed::Refused("no kid and no single matching key")),
    };
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Signed::Refused("bad signature"),
            _ => Signed::Refused("not a usable JWT"),
        })
}

/// The claim checks of OIDC Core §3.1.3.7 steps 2–3, 9–11.
pub fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expect<'_>,
    now: i64,
) -> Result<(), Refusal> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss.trim_end_matches('/') != expect.issuer.trim_end_matches('/') {
        return Err(Refusal::IdToken("issued by another issuer"));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&expect.client_id) {
        return Err(Refusal::IdToken("issued for another client (aud)"));
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (audiences.len() > 1 || azp.is_some()) && azp != Some(expect.client_id) {
        return Err(Refusal::IdToken("authorized party (azp) is another client"));
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    match exp {
        Some(exp) if exp + expect.skew_secs > now => {}
        Some(_) => return Err(Refusal::IdToken("expired")),
        None => return Err(Refusal::IdToken("has no exp")),
    }
    if claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| iat > now + expect.skew_secs)
    {
        return Err(Refusal::IdToken("issued in the future (iat)"));
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    let same = aws_lc_rs::constant_time::verify_slices_are_equal(
        nonce.as_bytes(),
        expect.nonce.as_bytes(),
    );
    if nonce.is_empty() || same.is_err() {
        return Err(Refusal::IdToken("nonce does not match this sign-in"));
    }
    Ok(())
}
