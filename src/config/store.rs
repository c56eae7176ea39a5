//! `[store]`: where app passwords live (issue 14). SQLite by default (one
//! file), PostgreSQL when several proxy instances serve the same users.

use super::raw::RawStore;
use super::*;

/// The default store: one SQLite file, created on first start.
pub const DEFAULT_STORE_URL: &str = "sqlite:///var/lib/oauthbearer-proxy/store.db";

/// Which database holds the app passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:///path/store.db`: the file's path.
    Sqlite(PathBuf),
    /// `postgres://user@host:port/db` (or `postgresql://`), as written;
    /// the password comes from `store.password`.
    Postgres(String),
}

impl std::fmt::Display for StoreUrl {
    /// The URL as configured (it holds no password: `store.password` does).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            StoreUrl::Postgres(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: StoreUrl,
    /// PostgreSQL: the database user's password (a secret value).
    pub password: Option<Secret>,
    /// The key of the passwords' keyed hash (a secret value, at least 32
    /// characters); without it one is generated once and kept in the store.
    pub hash_key: Option<Secret>,
    /// PostgreSQL over TLS: the CA of the server's certificate (PEM);
    /// without it, Mozilla's roots.
    pub ca: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: StoreUrl::Sqlite(PathBuf::from(
                DEFAULT_STORE_URL.trim_start_matches("sqlite://"),
            )),
            password: None,
            hash_key: None,
            ca: None,
        }
    }
}

pub(super) fn store(raw: Option<RawStore>) -> Result<StoreSettings> {
    let Some(raw) = raw else {
        return Ok(StoreSettings::default());
    };
    let url = match raw.url.as_deref() {
        None => StoreSettings::default().url,
        Some(u) => store_url(u)?,
    };
    let password = raw
        .password
        .map(|p| resolve_secret("store.password", p))
        .transpose()?;
    if password.is_some() && matches!(url, StoreUrl::Sqlite(_)) {
        return Err(ConfigError::new(
            "store.password",
            "is only used with a \"postgres://\" url",
        ));
    }
    let hash_key = raw
        .hash_key
        .map(|k| resolve_secret("store.hash-key", k))
        .transpose()?;
    if hash_key.as_ref().is_some_and(|k| k.expose().len() < 32) {
        return Err(ConfigError::new(
            "store.hash-key",
            "must be at least 32 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    if raw.ca.is_some() && matches!(url, StoreUrl::Sqlite(_)) {
        return Err(ConfigError::new(
            "store.ca",
            "is only used with a \"postgres://\" url",
        ));
    }
    Ok(StoreSettings {
        url,
        password,
        hash_key,
        ca: raw.ca,
    })
}

fn store_url(url: &str) -> Result<StoreUrl> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !path.starts_with('/') {
            return Err(ConfigError::new(
                "store.url",
                format!(
                    "`{url}`: the SQLite file must be an absolute path (\"sqlite:///var/lib/...\")"
                ),
            ));
        }
        return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
    }
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Err(ConfigError::new(
                    "store.url",
                    "must not hold the password: give it as `store.password` (a secret value)",
                ));
            }
        }
        return Ok(StoreUrl::Postgres(url.to_string()));
    }
    Err(ConfigError::new(
        "store.url",
        format!("`{url}` is neither \"sqlite:///PATH\" nor \"postgres://USER@HOST:PORT/DB\""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            store_url("sqlite:///tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(store_url("sqlite://x.db").is_err());
        assert!(matches!(
            store_url("postgres://proxy@127.0.0.1:5432/mail").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(store_url("postgres://proxy:pw@127.0.0.1:5432/mail").is_err());
        assert!(store_url("mysql://x").is_err());
    }

    #[test]
    fn the_ca_is_for_postgresql_only() {
        let raw = |url: &str| RawStore {
            url: Some(url.into()),
            ca: Some("/etc/ssl/db-ca.pem".into()),
            ..RawStore::default()
        };
        let pg = store(Some(raw("postgres://p@db/mail?sslmode=require"))).unwrap();
        assert_eq!(
            pg.ca.as_deref(),
            Some(std::path::Path::new("/etc/ssl/db-ca.pem"))
        );
        let e = store(Some(raw("sqlite:///tmp/x.db"))).unwrap_err();
        assert!(e.to_string().contains("store.ca"), "{e}");
    }
}
