//! The database's tables: created or migrated at start-up under an
//! advisory lock (instances may start together), and the hash key the
//! first instance generated.

use super::{unavailable, StoreError};
use crate::apppass::password::{self, HashKey};
use crate::secret::Secret;
use tokio_postgres::Client;

/// Serialises schema migrations between instances starting together.
const MIGRATION_LOCK: i64 = 0x6f61_7574_6870_7078;

pub(super) const MIGRATIONS: &[&str] = &[
    "
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
",
    "
    ALTER TABLE app_password_users ADD COLUMN directory TEXT;
    ALTER TABLE app_password_users ADD COLUMN refresh BYTEA;
    ALTER TABLE app_password_users ADD COLUMN valid_until BIGINT;
    ALTER TABLE app_password_users ADD COLUMN next_check BIGINT;
    CREATE INDEX app_password_users_due ON app_password_users (directory, next_check)
        WHERE refresh IS NOT NULL;
",
];

pub(super) async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
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
pub(super) async fn hash_key(
    client: &Client,
    configured: Option<&Secret>,
) -> Result<HashKey, StoreError> {
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
