//! The SQLite file itself: created (mode 0600, with its directory) on
//! first start, switched to WAL, its schema migrated by `PRAGMA
//! user_version`, and the hash key generated once and kept in it.

use super::super::password::{self, HashKey};
use crate::secret::Secret;
use rusqlite::{params, Connection};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Each entry moves the schema from its index to the next version.
pub(super) const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE app_password_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE app_password_users (
        owner TEXT PRIMARY KEY,
        disabled INTEGER NOT NULL DEFAULT 0,
        checked INTEGER NOT NULL
    );
    CREATE TABLE app_passwords (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        last_used INTEGER,
        last_client TEXT,
        last_protocol TEXT,
        UNIQUE (owner, name)
    );
",
    "
    ALTER TABLE app_password_users ADD COLUMN directory TEXT;
    ALTER TABLE app_password_users ADD COLUMN refresh BLOB;
    ALTER TABLE app_password_users ADD COLUMN valid_until INTEGER;
    ALTER TABLE app_password_users ADD COLUMN next_check INTEGER;
    CREATE INDEX app_password_users_due ON app_password_users (directory, next_check)
        WHERE refresh IS NOT NULL;
",
];

/// Opens (or creates) the file, in WAL, its schema up to date.
pub(super) fn open(
    path: &Path,
    configured: Option<Secret>,
) -> Result<(Connection, HashKey), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    // The file holds hashes only, but nobody else needs to read it.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot switch to WAL (journal_mode is {mode})"));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(|e| e.to_string())?;
    migrate(&conn).map_err(|e| format!("schema migration failed: {e}"))?;
    let key = hash_key(&conn, configured).map_err(|e| e.to_string())?;
    Ok((conn, key))
}

/// Brings the schema up to date inside one write transaction, so two
/// processes opening a new file at once do not both migrate it.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        Ok(())
    })();
    conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    result
}

/// The configured key, else the one generated on first start.
fn hash_key(conn: &Connection, configured: Option<Secret>) -> rusqlite::Result<HashKey> {
    if let Some(k) = configured {
        return Ok(HashKey::from_secret(k.expose()));
    }
    let fresh = password::random_hex(32).map_err(|e| {
        rusqlite::Error::InvalidParameterName(format!("no key could be generated: {e}"))
    })?;
    conn.execute(
        "INSERT OR IGNORE INTO app_password_meta (key, value) VALUES ('hash-key', ?1)",
        params![fresh],
    )?;
    let stored: String = conn.query_row(
        "SELECT value FROM app_password_meta WHERE key = 'hash-key'",
        [],
        |r| r.get(0),
    )?;
    Ok(HashKey::from_secret(&stored))
}
