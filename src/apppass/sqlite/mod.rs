//! The default store: one SQLite file (WAL), created on first start, its
//! schema migrated by `PRAGMA user_version`. SQLite is synchronous: every
//! call runs on tokio's blocking pool, never on a session's event loop.

use super::password::{self, HashKey};
use super::standing::Sealer;
use super::{AppPassword, BoxFuture, Due, LastUse, SignIn, Standing, Store, StoreError, Verified};
use crate::config::StoreSettings;
use crate::secret::Secret;
mod schema;

use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const COLUMNS: &str = "p.id, p.owner, p.name, p.created, p.last_used, p.last_client, \
                       p.last_protocol, p.hash, COALESCE(u.disabled, 0), u.valid_until";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    found: super::cache::Found,
    key: HashKey,
    sealer: Sealer,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the file (creating it, mode 0600, and its directory), switches
    /// it to WAL and brings the schema up to date.
    pub async fn open(path: &Path, settings: &StoreSettings) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let configured = settings.hash_key.clone();
        let shown = path.clone();
        let (conn, key) = tokio::task::spawn_blocking(move || schema::open(&path, configured))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", shown.display())))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            found: super::cache::Found::default(),
            sealer: Sealer::new(&key),
            key,
            path: shown,
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))
    }
}

fn record(r: &Row<'_>) -> rusqlite::Result<(Verified, Vec<u8>)> {
    let last_used = match r.get::<_, Option<i64>>(4)? {
        Some(at) => Some(LastUse {
            at,
            client: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            protocol: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        }),
        None => None,
    };
    let p = AppPassword {
        id: r.get(0)?,
        user: r.get(1)?,
        name: r.get(2)?,
        created: r.get(3)?,
        last_used,
    };
    let verified = Verified {
        password: p,
        disabled: r.get::<_, i64>(8)? != 0,
        valid_until: r.get(9)?,
    };
    Ok((verified, r.get(7)?))
}

impl Store for SqliteStore {
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
            let record = AppPassword {
                id: password::random_hex(6).map_err(StoreError::Unavailable)?,
                user: user.to_string(),
                name: name.trim().to_string(),
                created: super::now(),
                last_used: None,
            };
            let r = record.clone();
            let inserted = self
                .run(move |c| {
                    c.execute(
                        "INSERT OR IGNORE INTO app_passwords (id, owner, name, hash, created) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![r.id, r.user, r.name, hash, r.created],
                    )
                })
                .await?;
            if inserted == 0 {
                return Err(StoreError::Invalid(format!(
                    "there is already an app password called {:?}",
                    record.name
                )));
            }
            Ok((record, secret))
        })
    }

    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<AppPassword>, StoreError>> {
        let user = user.to_string();
        Box::pin(self.run(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM app_passwords p LEFT JOIN app_password_users u \
                 ON u.owner = p.owner WHERE p.owner = ?1 ORDER BY p.created, p.name"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![user], record)?;
            rows.map(|r| r.map(|(v, _)| v.password)).collect()
        }))
    }

    fn revoke<'a>(
        &'a self,
        user: &'a str,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let (user, id) = (user.to_string(), id.map(str::to_string));
        Box::pin(async move {
            let ids = self
                .run(move |c| {
                    let mut stmt = c.prepare(
                        "DELETE FROM app_passwords WHERE owner = ?1 AND (?2 IS NULL OR id = ?2) \
                         RETURNING id",
                    )?;
                    let rows = stmt.query_map(params![user, id], |r| r.get::<_, String>(0))?;
                    rows.collect::<rusqlite::Result<Vec<String>>>()
                })
                .await?;
            self.found.clear();
            super::end_sessions(&ids);
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
            if let Some(found) = self.found.get(&hash) {
                return Ok(Some(found));
            }
            let found = self
                .run(move |c| {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM app_passwords p LEFT JOIN app_password_users u \
                         ON u.owner = p.owner WHERE p.hash = ?1"
                    );
                    c.prepare_cached(&sql)?
                        .query_row(params![hash.to_vec()], record)
                        .optional()
                })
                .await?;
            let verified =
                found.and_then(|(v, stored)| password::same(&stored, &hash).then_some(v));
            // A lapsed one is not kept: a confirmation may come any moment.
            if let Some(v) = verified.as_ref().filter(|v| !v.lapsed(super::now())) {
                self.found.put(hash, v);
            }
            Ok(verified)
        })
    }

    fn touch<'a>(
        &'a self,
        id: &'a str,
        client: &'a str,
        protocol: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (id, client, protocol) = (id.to_string(), client.to_string(), protocol.to_string());
        Box::pin(async move {
            let now = super::now();
            self.run(move |c| {
                c.prepare_cached(
                    "UPDATE app_passwords SET last_used = ?1, last_client = ?2, \
                     last_protocol = ?3 WHERE id = ?4",
                )?
                .execute(params![now, client, protocol, id])
            })
            .await
            .map(drop)
        })
    }

    fn set_standing<'a>(
        &'a self,
        user: &'a str,
        ok: bool,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let owner = user.to_string();
        Box::pin(async move {
            let now = super::now();
            self.run(move |c| {
                c.execute(
                    "INSERT INTO app_password_users (owner, disabled, checked) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (owner) DO UPDATE SET disabled = ?2, checked = ?3, \
                     refresh = CASE WHEN ?2 THEN NULL ELSE refresh END",
                    params![owner, i64::from(!ok), now],
                )
            })
            .await?;
            self.found.clear();
            if !ok {
                super::end_user_sessions(user);
            }
            Ok(())
        })
    }

    fn standing<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Standing, StoreError>> {
        let owner = user.to_string();
        Box::pin(async move {
            let found = self
                .run(move |c| {
                    c.query_row(
                        "SELECT disabled, refresh IS NOT NULL, valid_until \
                         FROM app_password_users WHERE owner = ?1",
                        params![owner],
                        |r| {
                            Ok(Standing {
                                disabled: r.get::<_, i64>(0)? != 0,
                                checked: r.get(1)?,
                                valid_until: r.get(2)?,
                            })
                        },
                    )
                    .optional()
                })
                .await?;
            Ok(found.unwrap_or_default())
        })
    }

    fn signed_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let sealed = match &s.refresh {
                Some(t) => Some(self.sealer.seal(s.user, t)?),
                None => None,
            };
            let (owner, directory) = (s.user.to_string(), s.directory.to_string());
            let (until, next, now) = (s.valid_until, s.next_check, super::now());
            self.run(move |c| {
                c.execute(
                    "INSERT INTO app_password_users \
                     (owner, disabled, checked, directory, refresh, valid_until, next_check) \
                     VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (owner) DO UPDATE SET \
                     disabled = 0, checked = ?2, directory = ?3, refresh = ?4, \
                     valid_until = ?5, next_check = ?6",
                    params![owner, now, directory, sealed, until, next],
                )
            })
            .await?;
            self.found.clear();
            Ok(())
        })
    }

    fn due<'a>(
        &'a self,
        directory: &'a str,
        now: i64,
        next: i64,
    ) -> BoxFuture<'a, Result<Vec<Due>, StoreError>> {
        let directory = directory.to_string();
        Box::pin(async move {
            let rows = self
                .run(move |c| {
                    let mut stmt = c.prepare_cached(
                        "UPDATE app_password_users SET next_check = ?3 WHERE directory = ?1 \
                         AND refresh IS NOT NULL AND disabled = 0 AND next_check <= ?2 \
                         RETURNING owner, refresh",
                    )?;
                    let rows = stmt.query_map(params![directory, now, next], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            Ok(self.sealer.open_all(rows))
        })
    }

    fn confirmed<'a>(
        &'a self,
        user: &'a str,
        rotated: Option<Secret>,
        valid_until: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let sealed = match &rotated {
                Some(t) => Some(self.sealer.seal(user, t)?),
                None => None,
            };
            let (owner, now) = (user.to_string(), super::now());
            self.run(move |c| {
                c.execute(
                    "UPDATE app_password_users SET checked = ?2, valid_until = ?3, \
                     refresh = COALESCE(?4, refresh) WHERE owner = ?1 AND disabled = 0",
                    params![owner, now, valid_until, sealed],
                )
            })
            .await
            .map(drop)
        })
    }
}

#[cfg(test)]
mod tests;
