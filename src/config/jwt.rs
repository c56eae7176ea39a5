//! A `jwt` directory's keys: algorithms, shared secret, JWKS URL.

use super::*;

/// Every asymmetric algorithm: the default of `algorithms`.
pub const ASYMMETRIC_ALGORITHMS: &[jsonwebtoken::Algorithm] = {
    use jsonwebtoken::Algorithm::*;
    &[
        ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512, EdDSA,
    ]
};

#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// `jwks.url`; without it, the discovery document's `jwks_uri`.
    pub jwks_url: Option<String>,
    /// Accepted algorithms (never empty; HS* only with a secret).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The HS256/384/512 shared secret.
    pub secret: Option<Secret>,
    /// `jwt.allow-untyped`: also accept `typ: JWT` or no `typ` (RFC 9068
    /// wants `at+jwt`), for providers that do not type their access tokens.
    pub allow_untyped: bool,
    /// `auth.*` on a JWT directory: credentials for the issuer's RFC 7662
    /// introspection endpoint, which session re-validation then asks (a
    /// JWT alone cannot tell that it was revoked).
    pub introspect: Option<super::IntrospectAuth>,
}

pub(super) fn jwt_settings(
    name: &str,
    jwks: Option<raw::RawJwks>,
    algorithms: Option<Vec<String>>,
    secret: Option<Secret>,
    has_issuer: bool,
) -> Result<JwtSettings> {
    use jsonwebtoken::{Algorithm, AlgorithmFamily};
    let key = |k: &str| format!("directory.{name}.{k}");
    let secret = match secret {
        Some(s) => {
            let s = resolve_secret(&key("secret"), s)?;
            if s.expose().len() < 32 {
                return Err(ConfigError::new(
                    key("secret"),
                    "must be at least 32 bytes (RFC 7518 §3.2)",
                ));
            }
            Some(s)
        }
        None => None,
    };
    let algorithms = match algorithms {
        Some(list) => {
            let mut algs = Vec::new();
            for a in &list {
                let alg: Algorithm = a.parse().map_err(|_| {
                    ConfigError::new(
                        key("algorithms"),
                        format!(
                            "`{a}` is not one of ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512, HS256, HS384, HS512, EdDSA"
                        ),
                    )
                })?;
                if !algs.contains(&alg) {
                    algs.push(alg);
                }
            }
            if algs.is_empty() {
                return Err(ConfigError::new(key("algorithms"), "must not be empty"));
            }
            algs
        }
        None => {
            let mut algs = ASYMMETRIC_ALGORITHMS.to_vec();
            if secret.is_some() {
                algs.extend([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
            }
            algs
        }
    };
    let symmetric = algorithms
        .iter()
        .any(|a| a.family() == AlgorithmFamily::Hmac);
    let asymmetric = algorithms
        .iter()
        .any(|a| a.family() != AlgorithmFamily::Hmac);
    if symmetric && secret.is_none() {
        return Err(ConfigError::new(
            key("secret"),
            "is required for HS256/HS384/HS512",
        ));
    }
    if secret.is_some() && !symmetric {
        return Err(ConfigError::new(
            key("secret"),
            "is set, but `algorithms` lists no HS256/HS384/HS512",
        ));
    }
    let jwks_url = jwks.and_then(|j| j.url);
    if let Some(url) = &jwks_url {
        check_url(&key("jwks.url"), url)?;
    }
    if asymmetric && jwks_url.is_none() && !has_issuer {
        return Err(ConfigError::new(
            key("jwks.url"),
            "is required (or set `issuer` to find it by discovery)",
        ));
    }
    Ok(JwtSettings {
        jwks_url,
        algorithms,
        secret,
        allow_untyped: false,
        introspect: None,
    })
}
