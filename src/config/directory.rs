//! `[directory.NAME]`: Stalwart's OIDC directory block (endpoint, auth, fields).

use super::cache::cache_settings;
use super::jwt::jwt_settings;
use super::raw::RawDirectory;
use super::session::{backchannel_logout, session_policy};
use super::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Directory {
    pub name: String,
    pub timeout: Duration,
    pub endpoint: Endpoint,
    pub fields: Fields,
    pub required_scope: Option<String>,
    pub issuer: Option<String>,
    pub tls_ca: Option<PathBuf>,
    /// Required `aud` (JWT and introspection answers).
    pub audience: Option<String>,
    /// Tolerated clock skew on `exp` / `nbf`.
    pub clock_skew: Duration,
    /// Neither audience nor scope required, knowingly (`allow-any-audience`).
    pub allow_any_audience: bool,
    pub cache: CacheSettings,
    pub session: SessionPolicy,
    pub backchannel_logout: Option<BackchannelLogout>,
}

/// How a directory asks about a token. A missing URL comes from the
/// issuer's discovery document (`issuer` is then required).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    UserInfo {
        url: Option<String>,
    },
    Introspect {
        url: Option<String>,
        auth: IntrospectAuth,
    },
    /// Local validation of JWT access tokens.
    Jwt(JwtSettings),
}

/// Client authentication towards an RFC 7662 introspection endpoint
/// (Stalwart's `auth.method`).
#[derive(Debug, Clone, PartialEq)]
pub enum IntrospectAuth {
    None,
    Basic {
        username: String,
        secret: Secret,
    },
    Token {
        token: Secret,
    },
    /// RFC 6749 §2.3.1: `client_id` and `client_secret` in the form body.
    ClientSecretPost {
        client_id: String,
        secret: Secret,
    },
    /// The token being introspected is itself the bearer credential.
    UserToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub email: Option<String>,
    pub username: Option<String>,
    pub full_name: Option<String>,
    /// Claims the upstreams this directory serves route by
    /// (`routing.claim`), carried in the identity; set by the cross-check.
    pub routing: Vec<String>,
}

pub(super) fn directory(name: &str, mut raw: RawDirectory) -> Result<Directory> {
    let key = |k: &str| format!("directory.{name}.{k}");
    if raw.kind != "oidc" {
        return Err(ConfigError::new(
            key("type"),
            format!("`{}` is not supported; use \"oidc\"", raw.kind),
        ));
    }
    let timeout = match raw.timeout.take() {
        Some(v) => duration(&key("timeout"), &v)?,
        None => Duration::from_secs(15),
    };
    if let Some(issuer) = &raw.issuer {
        check_url(&key("issuer"), issuer)?;
    }
    let (url, method) = match raw.endpoint.take() {
        Some(e) => (e.url, e.method),
        None => (None, None),
    };
    if let Some(url) = &url {
        check_url(&key("endpoint.url"), url)?;
    }
    let method = method.unwrap_or_else(|| "userinfo".to_string());
    if url.is_none() && raw.issuer.is_none() && method != "jwt" {
        return Err(ConfigError::new(
            key("endpoint.url"),
            "is required (or set `issuer` to find it by discovery)",
        ));
    }
    let audience = raw.audience.take().filter(|a| !a.is_empty());
    let allow_any_audience = raw.allow_any_audience.unwrap_or(false);
    hygiene::check_policy(&hygiene::Policy {
        name,
        method: &method,
        audience: audience.as_deref(),
        required_scope: raw.required_scope.as_deref(),
        allow_any_audience,
    })?;
    let endpoint = endpoint(name, &method, url, &mut raw)?;
    let fields = Fields {
        email: raw.fields.email.or_else(|| Some("email".into())),
        username: raw
            .fields
            .username
            .or_else(|| Some("preferred_username".into())),
        full_name: raw.fields.full_name,
        routing: Vec::new(),
    };
    let clock_skew = match raw.clock_skew.take() {
        Some(v) => duration(&key("clock-skew"), &v)?,
        None => Duration::from_secs(60),
    };
    if clock_skew > Duration::from_secs(600) {
        return Err(ConfigError::new(key("clock-skew"), "must be at most 10m"));
    }
    let session = session_policy(name, raw.session.take())?;
    let backchannel_logout =
        backchannel_logout(name, raw.backchannel_logout.take(), raw.issuer.as_deref())?;
    Ok(Directory {
        name: name.to_string(),
        session,
        backchannel_logout,
        timeout,
        endpoint,
        fields,
        required_scope: raw.required_scope,
        issuer: raw.issuer,
        tls_ca: raw.tls_ca.map(PathBuf::from),
        audience,
        clock_skew,
        allow_any_audience,
        cache: cache_settings(name, raw.cache.unwrap_or_default())?,
    })
}

/// The endpoint of `method`, and the keys only `jwt` uses refused elsewhere.
pub(super) fn endpoint(
    name: &str,
    method: &str,
    url: Option<String>,
    raw: &mut RawDirectory,
) -> Result<Endpoint> {
    let key = |k: &str| format!("directory.{name}.{k}");
    if method != "jwt" {
        for (k, set) in [
            ("algorithms", raw.algorithms.is_some()),
            ("secret", raw.secret.is_some()),
            ("jwks.url", raw.jwks.is_some()),
            ("jwt.allow-untyped", raw.jwt.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    key(k),
                    "is only used with endpoint.method = \"jwt\"",
                ));
            }
        }
    }
    Ok(match method {
        "userinfo" => Endpoint::UserInfo { url },
        "introspect" | "introspection" => Endpoint::Introspect {
            url,
            auth: introspect_auth(name, raw.auth.take())?,
        },
        "jwt" => {
            if url.is_some() {
                return Err(ConfigError::new(
                    key("endpoint.url"),
                    "is not used with \"jwt\" (keys come from `jwks.url` or the issuer's discovery)",
                ));
            }
            let mut settings = jwt_settings(
                name,
                raw.jwks.take(),
                raw.algorithms.take(),
                raw.secret.take(),
                raw.issuer.is_some(),
            )?;
            settings.allow_untyped = raw
                .jwt
                .take()
                .and_then(|j| j.allow_untyped)
                .unwrap_or(false);
            if raw.auth.is_some() {
                if raw.issuer.is_none() {
                    return Err(ConfigError::new(
                        key("issuer"),
                        "is required with auth.* on a \"jwt\" directory (the introspection endpoint comes from its discovery)",
                    ));
                }
                settings.introspect = Some(introspect_auth(name, raw.auth.take())?);
            }
            Endpoint::Jwt(settings)
        }
        other => {
            return Err(ConfigError::new(
                key("endpoint.method"),
                format!("`{other}` is not one of \"userinfo\", \"introspect\", \"jwt\""),
            ))
        }
    })
}

pub(super) fn introspect_auth(name: &str, auth: Option<raw::RawAuth>) -> Result<IntrospectAuth> {
    let key = |k: &str| format!("directory.{name}.{k}");
    let Some(a) = auth else {
        return Ok(IntrospectAuth::None);
    };
    fn required<T>(name: &str, value: Option<T>, k: &str, method: &str) -> Result<T> {
        value.ok_or_else(|| {
            ConfigError::new(
                format!("directory.{name}.{k}"),
                format!("is required for {method}"),
            )
        })
    }
    Ok(match a.method.as_deref() {
        None | Some("none") => IntrospectAuth::None,
        Some("basic") => IntrospectAuth::Basic {
            username: required(name, a.username, "auth.username", "basic")?,
            secret: resolve_secret(
                &key("auth.secret"),
                required(name, a.secret, "auth.secret", "basic")?,
            )?,
        },
        Some("client-secret-post") => IntrospectAuth::ClientSecretPost {
            client_id: required(name, a.username, "auth.username", "client-secret-post")?,
            secret: resolve_secret(
                &key("auth.secret"),
                required(name, a.secret, "auth.secret", "client-secret-post")?,
            )?,
        },
        Some("token") => IntrospectAuth::Token {
            token: resolve_secret(
                &key("auth.token"),
                required(name, a.token, "auth.token", "token")?,
            )?,
        },
        Some("user-token") => IntrospectAuth::UserToken,
        Some(other) => {
            return Err(ConfigError::new(
                key("auth.method"),
                format!(
                    "`{other}` is not one of \"none\", \"basic\", \"client-secret-post\", \"token\", \"user-token\""
                ),
            ))
        }
    })
}

pub(super) fn check_url(key: &str, url: &str) -> Result<()> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{url}` is not an http(s) URL"),
        ))
    }
}
