//! A directory's logout-token verifier: the signature (Back-Channel Logout
//! §2.6 step 2) against the directory's JWKS (`jwks.url`, or the issuer's
//! discovery `jwks_uri`; one refetch for an unknown `kid`), then the claim
//! checks of [`logout`](super::logout) and the `jti` replay cache.
//!
//! Algorithms: the directory's `algorithms` for a JWT directory, every
//! asymmetric one otherwise. `alg: none` is no algorithm here, an HS*
//! token is only checked with the directory's configured secret, and a
//! key is only used for its own algorithm (no algorithm confusion).

use super::discovery::Discovery;
use super::jwks::{Jwks, KeySet, Lookup, Source};
use super::logout::{check_claims, check_header, Error, Expect, Logout};
use super::replay::Replay;
use super::Stats;
use crate::config::{Directory, Endpoint, ASYMMETRIC_ALGORITHMS};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct Verifier {
    issuer: String,
    audience: String,
    skew_secs: i64,
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    jwks: Arc<Jwks>,
    replay: Arc<Replay>,
}

/// Why checking against a key set did not give claims.
enum Signed {
    UnknownKid,
    Refused(Error),
}

fn refused(why: &'static str) -> Error {
    Error::Refused(why)
}

impl Verifier {
    /// The verifier of a directory with `backchannel-logout`, sharing the
    /// JWT directory's key set when it has one. `None` without the key.
    pub fn for_directory(
        directory: &Directory,
        jwt_jwks: Option<Arc<Jwks>>,
        discovery: Option<&Arc<Discovery>>,
        http: &reqwest::Client,
        stats: &Arc<Stats>,
    ) -> Option<Self> {
        let logout = directory.backchannel_logout.as_ref()?;
        let issuer = directory.issuer.clone()?;
        let (algorithms, secret, jwks_url) = match &directory.endpoint {
            Endpoint::Jwt(s) => (
                s.algorithms.clone(),
                s.secret
                    .as_ref()
                    .map(|k| DecodingKey::from_secret(k.expose().as_bytes())),
                s.jwks_url.clone(),
            ),
            _ => (ASYMMETRIC_ALGORITHMS.to_vec(), None, None),
        };
        let jwks = match (jwt_jwks, jwks_url, discovery) {
            (Some(shared), _, _) => shared,
            (None, Some(url), _) => Arc::new(Jwks::new(
                Source::Url(url),
                http.clone(),
                stats.clone(),
                &directory.name,
            )),
            (None, None, Some(d)) => Arc::new(Jwks::new(
                Source::Discovery(d.clone()),
                http.clone(),
                stats.clone(),
                &directory.name,
            )),
            (None, None, None) => return None,
        };
        Some(Self::new(
            &issuer,
            &logout.audience,
            directory.clock_skew.as_secs() as i64,
            algorithms,
            secret,
            jwks,
            Replay::shared(),
        ))
    }

    pub fn new(
        issuer: &str,
        audience: &str,
        skew_secs: i64,
        algorithms: Vec<Algorithm>,
        secret: Option<DecodingKey>,
        jwks: Arc<Jwks>,
        replay: Arc<Replay>,
    ) -> Self {
        Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            skew_secs,
            algorithms,
            secret,
            jwks,
            replay,
        }
    }

    /// Verifies `token` at time `now` (seconds since the epoch); a good
    /// token's `jti` is then used up.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Logout, Error> {
        let (alg, kid) = self.header(token)?;
        let claims = if alg.family() == AlgorithmFamily::Hmac {
            self.with_secret(token, alg)?
        } else {
            let set = self
                .jwks
                .loaded()
                .await
                .map_err(|e| Error::Unavailable(e.reason()))?;
            match self.with_keys(token, alg, kid.as_deref(), &set) {
                Ok(claims) => claims,
                Err(Signed::Refused(e)) => return Err(e),
                Err(Signed::UnknownKid) => {
                    // The provider may have rotated its keys: one refetch.
                    let fresh = self
                        .jwks
                        .refresh_for_unknown_kid(&set)
                        .await
                        .map_err(|e| Error::Unavailable(e.reason()))?
                        .ok_or_else(|| refused("unknown signing key (kid)"))?;
                    self.with_keys(token, alg, kid.as_deref(), &fresh)
                        .map_err(Signed::into_error)?
                }
            }
        };
        self.accept(&claims, now)
    }

    /// The same against a given key set, without I/O (tests, tools).
    pub fn verify_with(&self, token: &str, set: &KeySet, now: i64) -> Result<Logout, Error> {
        let (alg, kid) = self.header(token)?;
        let claims = if alg.family() == AlgorithmFamily::Hmac {
            self.with_secret(token, alg)?
        } else {
            self.with_keys(token, alg, kid.as_deref(), set)
                .map_err(Signed::into_error)?
        };
        self.accept(&claims, now)
    }

    /// Claims, then the replay cache (last: a token refused for another
    /// reason does not use up its `jti`).
    fn accept(&self, claims: &Map<String, Value>, now: i64) -> Result<Logout, Error> {
        let expect = Expect {
            issuer: &self.issuer,
            audience: &self.audience,
            skew_secs: self.skew_secs,
        };
        let logout = check_claims(claims, &expect, now)?;
        if !self
            .replay
            .first_use(&self.issuer, &logout.jti, logout.valid_until, now)
        {
            return Err(refused("jti already used (a replayed logout token)"));
        }
        Ok(logout)
    }

    /// The header checks; the algorithm (accepted here) and `kid`.
    fn header(&self, token: &str) -> Result<(Algorithm, Option<String>), Error> {
        let raw =
            super::hygiene::raw_header(token).map_err(|_| refused("not a well-formed JWT"))?;
        check_header(token, &raw)?;
        // `alg: none` (or any unknown alg) has no `Algorithm`: refused here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refused("JWT header unusable (unsupported alg such as none?)"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(refused("signing algorithm not accepted"));
        }
        Ok((header.alg, header.kid))
    }

    fn with_secret(&self, token: &str, alg: Algorithm) -> Result<Map<String, Value>, Error> {
        let key = self
            .secret
            .as_ref()
            .ok_or_else(|| refused("HS algorithms need the directory's secret"))?;
        decode(token, alg, key)
    }

    fn with_keys(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        set: &KeySet,
    ) -> Result<Map<String, Value>, Signed> {
        match set.find(kid, alg) {
            Lookup::Found(k) => decode(token, alg, &k.key).map_err(Signed::Refused),
            Lookup::Unknown => Err(Signed::UnknownKid),
            Lookup::Mismatch => Err(Signed::Refused(refused(
                "the signing key does not belong to the token's algorithm",
            ))),
            Lookup::Ambiguous => Err(Signed::Refused(refused(
                "the token names no kid and the key set has no single matching key",
            ))),
        }
    }
}

impl Signed {
    fn into_error(self) -> Error {
        match self {
            Signed::UnknownKid => refused("unknown signing key (kid)"),
            Signed::Refused(e) => e,
        }
    }
}

/// The signature only: every claim is checked by `check_claims`.
fn decode(token: &str, alg: Algorithm, key: &DecodingKey) -> Result<Map<String, Value>, Error> {
    if key.family() != alg.family() {
        return Err(refused(
            "the signing key does not belong to the token's algorithm",
        ));
    }
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => refused("bad signature"),
            _ => refused("not a well-formed JWT"),
        })
}
