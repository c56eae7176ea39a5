//! PostgreSQL, for several proxy instances serving the same users.
//!
//! No instance keeps a local copy: every login asks the database, so a
//! password created, revoked or disabled on one instance takes effect on
//! every other at its next login. What cannot be asked for is an open
//! session: each change is announced with `NOTIFY` on [`CHANNEL`], and every
//! instance `LISTEN`s and ends its own sessions that used a revoked password
//! or belong to a disabled user ([`super::notify`]).

use super::password::{self, HashKey};
use super::{AppPassword, BoxFuture, LastUse, Store, StoreError, Verified};
use crate::config::StoreSettings;
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;
use tokio_postgres::{Client, NoTls, Row};

/// Where instances announce changes.
pub const CHANNEL: &str = "oauthbearer_proxy_app_passwords";
/// One query, connection included, at most this long.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Serialises schema migrations between instances starting together.
const MIGRATION_LOCK: i64 = 0x6f61_7574_6870_7078;

const MIGRATIONS: &[&str] = &["
    CREATE TABLE app_password_users (
        owner TEXT PRIMARY KEY,
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        checked BIGINT NOT NULL
    );
    CREATE TABLE app_passwords (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        hash BYTEA NOT NULL UNIQUE,
        created BIGINT NOT NULL,
        last_used BIGINT,
        last_client TEXT,
        last_protocol TEXT,
        UNIQUE (owner, name)
    );
"];

const COLUMNS: &str = "p.id, p.owner, p.name, p.created, p.last_used, p.last_client, \
                       p.last_protocol, p.hash, COALESCE(u.disabled, FALSE)";

pub struct PgStore {
    config: tokio_postgres::Config,
    client: RwLock<Arc<Client>>,
    key: HashKey,
    /// Where connections are driven: the runtime that opened the store.
    handle: tokio::runtime::Handle,
    listener: tokio::task::AbortHandle,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

/// Connects, driving the connection on `handle`.
async fn connect(
    config: &tokio_postgres::Config,
    handle: &tokio::runtime::Handle,
) -> Result<Client, StoreError> {
    let (client, connection) = tokio::time::timeout(TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| unavailable("connecting timed out"))?
        .map_err(unavailable)?;
    handle.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("app-password store: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects, brings the schema up to date, and starts listening for
    /// the other instances' changes.
    pub async fn open(url: &str, settings: &StoreSettings) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("`store.url`: {e}")))?;
        if let Some(p) = &settings.password {
            config.password(p.expose());
        }
        config.connect_timeout(TIMEOUT);
        config.application_name("oauthbearer-proxy");
        let handle = tokio::runtime::Handle::current();
        let mut client = connect(&config, &handle).await?;
        migrate(&mut client).await.map_err(unavailable)?;
        let key = hash_key(&client, settings.hash_key.as_ref()).await?;
        let listener = handle
            .spawn(super::notify::listen(config.clone()))
            .abort_handle();
        Ok(Self {
            config,
            client: RwLock::new(Arc::new(client)),
            key,
            handle,
            listener,
        })
    }

    /// The connection, opened again if it was lost.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let current = self.client.read().await.clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let mut slot = self.client.write().await;
        if slot.is_closed() {
            *slot = Arc::new(connect(&self.config, &self.handle).await?);
        }
        Ok(slot.clone())
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        tokio::time::timeout(TIMEOUT, client.query(sql, params))
            .await
            .map_err(|_| unavailable("the query timed out"))?
            .map_err(unavailable)
    }

    async fn announce(&self, payload: &str) -> Result<(), StoreError> {
        self.query("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map(drop)
    }
}

async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS app_password_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    .await?;
    let version: i64 = tx
        .query_opt(
            "SELECT value::BIGINT FROM app_password_meta WHERE key = 'schema-version'",
            &[],
        )
        .await?
        .map_or(0, |r| r.get(0));
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO app_password_meta (key, value) VALUES ('schema-version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&(i + 1).to_string()],
        )
        .await?;
    }
    tx.commit().await
}

/// The configured key, else the one the first instance generated.
async fn hash_key(client: &Client, configured: Option<&Secret>) -> Result<HashKey, StoreError> {
    if let Some(k) = configured {
        return Ok(HashKey::from_secret(k.expose()));
    }
    let fresh = password::random_hex(32).map_err(StoreError::Unavailable)?;
    client
        .execute(
            "INSERT INTO app_password_meta (key, value) VALUES ('hash-key', $1) \
             ON CONFLICT (key) DO NOTHING",
            &[&fresh],
        )
        .await
        .map_err(unavailable)?;
    let row = client
        .query_one(
            "SELECT value FROM app_password_meta WHERE key = 'hash-key'",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(HashKey::from_secret(row.get::<_, &str>(0)))
}

fn record(r: &Row) -> Result<(AppPassword, Vec<u8>, bool), tokio_postgres::Error> {
    let last_used = r.try_get::<_, Option<i64>>(4)?.map(|at| -> LastUse {
        LastUse {
            at,
            client: r
                .try_get::<_, Option<String>>(5)
                .ok()
                .flatten()
                .unwrap_or_default(),
            protocol: r
                .try_get::<_, Option<String>>(6)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }
    });
    let p = AppPassword {
        id: r.try_get(0)?,
        user: r.try_get(1)?,
        name: r.try_get(2)?,
        created: r.try_get(3)?,
        last_used,
    };
    Ok((p, r.try_get(7)?, r.try_get(8)?))
}

impl Store for PgStore {
    fn create<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(AppPassword, Secret), StoreError>> {
        Box::pin(async move {
            super::check_name(user, name)?;
            let secret = password::generate().map_err(StoreError::Unavailable)?;
            let canonical = password::canonical(secret.expose().as_bytes())
                .ok_or_else(|| StoreError::Unavailable("generated an unusable password".into()))?;
            let hash = self.key.digest(&canonical).to_vec();
            let r = AppPassword {
                id: password::random_hex(6).map_err(StoreError::Unavailable)?,
                user: user.to_string(),
                name: name.trim().to_string(),
                created: super::now(),
                last_used: None,
            };
            let rows = self
                .query(
                    "INSERT INTO app_passwords (id, owner, name, hash, created) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
                    &[&r.id, &r.user, &r.name, &hash, &r.created],
                )
                .await?;
            if rows.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "there is already an app password called {:?}",
                    r.name
                )));
            }
            Ok((r, secret))
        })
    }

    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<AppPassword>, StoreError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM app_passwords p LEFT JOIN app_password_users u \
                 ON u.owner = p.owner WHERE p.owner = $1 ORDER BY p.created, p.name"
            );
            let rows = self.query(&sql, &[&user]).await?;
            rows.iter()
                .map(|r| record(r).map(|(p, _, _)| p).map_err(unavailable))
                .collect()
        })
    }

    fn revoke<'a>(
        &'a self,
        user: &'a str,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "DELETE FROM app_passwords WHERE owner = $1 AND ($2::TEXT IS NULL OR id = $2) \
                     RETURNING id",
                    &[&user, &id],
                )
                .await?;
            let ids: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
            super::end_sessions(&ids);
            if !ids.is_empty() {
                self.announce(&format!("revoked {}", ids.join(" "))).await?;
            }
            Ok(ids.len())
        })
    }

    fn verify<'a>(
        &'a self,
        presented: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Verified>, StoreError>> {
        Box::pin(async move {
            let Some(canonical) = password::canonical(presented) else {
                return Ok(None);
            };
            let hash = self.key.digest(&canonical);
            let sql = format!(
                "SELECT {COLUMNS} FROM app_passwords p LEFT JOIN app_password_users u \
                 ON u.owner = p.owner WHERE p.hash = $1"
            );
            let rows = self.query(&sql, &[&hash.as_slice()]).await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let (p, stored, disabled) = record(row).map_err(unavailable)?;
            Ok(password::same(&stored, &hash).then_some(Verified {
                password: p,
                disabled,
            }))
        })
    }

    fn touch<'a>(
        &'a self,
        id: &'a str,
        client: &'a str,
        protocol: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.query(
                "UPDATE app_passwords SET last_used = $1, last_client = $2, last_protocol = $3 \
                 WHERE id = $4",
                &[&super::now(), &client, &protocol, &id],
            )
            .await
            .map(drop)
        })
    }

    fn set_standing<'a>(
        &'a self,
        user: &'a str,
        ok: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.query(
                "INSERT INTO app_password_users (owner, disabled, checked) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner) DO UPDATE SET disabled = $2, checked = $3",
                &[&user, &!ok, &super::now()],
            )
            .await?;
            if !ok {
                super::end_user_sessions(user);
                self.announce(&format!("disabled {user}")).await?;
            }
            Ok(())
        })
    }

    fn standing<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT disabled FROM app_password_users WHERE owner = $1",
                    &[&user],
                )
                .await?;
            Ok(!rows.first().is_some_and(|r| r.get::<_, bool>(0)))
        })
    }
}
