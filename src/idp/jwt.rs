//! Local validation of JWT access tokens (RFC 7519, RFC 9068 profile).
//!
//! The signature is checked with a key from the provider's JWKS (or the
//! configured shared secret for HS256/384/512), then `exp`, `nbf` (with the
//! directory's clock skew), `iss`, `aud` and the required scope. `alg` must
//! be one of the directory's `algorithms`; `none` is not an algorithm here.
//! The key must belong to the header's algorithm family and, when the JWK
//! names an `alg`, to that algorithm: an HS256 token can never be checked
//! against a published RSA key (algorithm confusion). Before any key is
//! looked up, [`hygiene`](super::hygiene) checks that the header is an
//! access token's (`typ`, no `crit`); after the signature, that the claims
//! are not an ID token's nor sender-constrained.

use super::hygiene::{self, Typ};
use super::jwks::{Jwks, KeySet, Lookup};
use super::{Error, Rejection};
use crate::config::JwtSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct JwtValidator {
    algorithms: Vec<Algorithm>,
    /// One prepared `Validation` per accepted algorithm.
    validations: Vec<(Algorithm, Validation)>,
    secret: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    required_scope: Option<String>,
    allow_untyped: bool,
}

/// What the claims of a verified token are checked against.
pub struct Expect<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub leeway_secs: u64,
    pub required_scope: Option<&'a str>,
}

impl JwtValidator {
    pub fn new(settings: &JwtSettings, expect: &Expect<'_>, jwks: Option<Arc<Jwks>>) -> Self {
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| (alg, validation(alg, expect)))
            .collect();
        Self {
            algorithms: settings.algorithms.clone(),
            validations,
            secret: settings
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            jwks,
            required_scope: expect.required_scope.map(str::to_string),
            allow_untyped: settings.allow_untyped,
        }
    }

    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, Error> {
        let typ = self.typ(token)?;
        let claims = self.verify_signed(token).await?;
        hygiene::check_claims(&claims, typ)?;
        Ok(claims)
    }

    /// The header checks: an access token's `typ`, no `crit`.
    fn typ(&self, token: &str) -> Result<Typ, Error> {
        let header = hygiene::raw_header(token)?;
        let typ = hygiene::check_header(&header, self.allow_untyped);
        let typ_refused = !header.contains_key("crit") && !header.contains_key("b64");
        match typ {
            Err(refusal) if typ_refused => Err(hygiene::explain(token, refusal)),
            other => other,
        }
    }

    async fn verify_signed(&self, token: &str) -> Result<Map<String, Value>, Error> {
        let header = header(token)?;
        let alg = self.allowed(header.alg)?;
        if alg.family() == AlgorithmFamily::Hmac {
            let key = self
                .secret
                .as_ref()
                .ok_or_else(|| invalid("HS algorithms need the directory's secret"))?;
            return self.check(token, alg, key);
        }
        let jwks = self
            .jwks
            .as_ref()
            .ok_or_else(|| invalid("no key set for asymmetric algorithms"))?;
        let set = jwks.loaded().await?;
        match self.verify_with(token, alg, header.kid.as_deref(), &set) {
            Err(Verdict::UnknownKid) => {}
            other => return other.map_err(Verdict::into_error),
        }
        // An unknown kid: the provider may have rotated its keys.
        match jwks.refresh_for_unknown_kid(&set).await? {
            Some(fresh) => self
                .verify_with(token, alg, header.kid.as_deref(), &fresh)
                .map_err(Verdict::into_error),
            None => Err(invalid("unknown signing key (kid)")),
        }
    }

    /// Verification against a given key set (no I/O).
    pub fn verify_with(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        set: &KeySet,
    ) -> Result<Map<String, Value>, Verdict> {
        match set.find(kid, alg) {
            Lookup::Found(k) => self.check(token, alg, &k.key).map_err(Verdict::Error),
            Lookup::Unknown => Err(Verdict::UnknownKid),
            Lookup::Mismatch => Err(Verdict::Error(invalid(
                "the signing key does not belong to the token's algorithm",
            ))),
            Lookup::Ambiguous => Err(Verdict::Error(invalid(
                "the token names no kid and the key set has no single matching key",
            ))),
        }
    }

    /// Verifies a token against a given key set (no I/O), for tests and tools.
    pub fn verify_static(&self, token: &str, set: &KeySet) -> Result<Map<String, Value>, Error> {
        let typ = self.typ(token)?;
        let claims = self.verify_static_signed(token, set)?;
        hygiene::check_claims(&claims, typ)?;
        Ok(claims)
    }

    fn verify_static_signed(&self, token: &str, set: &KeySet) -> Result<Map<String, Value>, Error> {
        let header = header(token)?;
        let alg = self.allowed(header.alg)?;
        if alg.family() == AlgorithmFamily::Hmac {
            let key = self
                .secret
                .as_ref()
                .ok_or_else(|| invalid("HS algorithms need the directory's secret"))?;
            return self.check(token, alg, key);
        }
        self.verify_with(token, alg, header.kid.as_deref(), set)
            .map_err(Verdict::into_error)
    }

    fn allowed(&self, alg: Algorithm) -> Result<Algorithm, Error> {
        if self.algorithms.contains(&alg) {
            Ok(alg)
        } else {
            Err(invalid(&format!("algorithm {alg:?} is not accepted")))
        }
    }

    fn check(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
    ) -> Result<Map<String, Value>, Error> {
        if key.family() != alg.family() {
            return Err(invalid(
                "the signing key does not belong to the token's algorithm",
            ));
        }
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or_else(|| invalid("algorithm not accepted"))?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| invalid(reason(e.kind())))?;
        if let Some(scope) = &self.required_scope {
            if !has_scope(&data.claims, scope) {
                return Err(Error::Rejected(Rejection::InsufficientScope(scope.clone())));
            }
        }
        Ok(data.claims)
    }
}

/// Why a key-set verification did not succeed.
#[derive(Debug)]
pub enum Verdict {
    UnknownKid,
    Error(Error),
}

impl Verdict {
    fn into_error(self) -> Error {
        match self {
            Verdict::UnknownKid => invalid("unknown signing key (kid)"),
            Verdict::Error(e) => e,
        }
    }
}

fn invalid(why: &str) -> Error {
    Error::Rejected(Rejection::InvalidToken(why.to_string()))
}

fn header(token: &str) -> Result<jsonwebtoken::Header, Error> {
    jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        // `alg: none` (and any unknown alg) fails here: no such Algorithm.
        ErrorKind::Json(_) => invalid("JWT header unusable (unsupported alg such as `none`?)"),
        _ => invalid("not a well-formed JWT"),
    })
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidIssuer => "wrong issuer (iss)",
        ErrorKind::InvalidAudience => "wrong audience (aud)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "the signing key does not belong to the token's algorithm"
        }
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => "claim exp missing",
            "iss" => "claim iss missing",
            "aud" => "claim aud missing",
            _ => "a required claim is missing",
        },
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
        _ => "not a well-formed JWT",
    }
}

fn validation(alg: Algorithm, expect: &Expect<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = expect.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = expect.issuer {
        let bare = iss.trim_end_matches('/');
        v.set_issuer(&[bare.to_string(), format!("{bare}/")]);
        required.push("iss");
    }
    match expect.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

/// `scope` (space-separated, RFC 9068 / RFC 8693) or `scp` (a list or a
/// string, as Azure AD and Okta write it) contains `wanted`.
pub fn has_scope(claims: &Map<String, Value>, wanted: &str) -> bool {
    let in_string = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.split(' ').any(|x| x == wanted))
    };
    claims.get("scope").is_some_and(in_string)
        || claims.get("scp").is_some_and(|v| match v {
            Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
            other => in_string(other),
        })
}

/// The `iss` of a JWT-shaped token, read without verification (to route it
/// to the directory that will verify it). `None` for anything else.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    if !looks_like_jwt(token) {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
        .ok()
        .and_then(|c| c.iss)
}

/// Three base64url parts, the first a JSON object (`eyJ`): a JWS compact
/// serialization, which is what "a JWT by shape" means here.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    token.starts_with("eyJ")
        && ok(parts.next())
        && ok(parts.next())
        && ok(parts.next())
        && parts.next().is_none()
}
