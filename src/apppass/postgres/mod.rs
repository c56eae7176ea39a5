//! PostgreSQL, for several proxy instances serving the same users.
//!
//! No instance keeps a local copy: every login asks the database, so a
//! password created, revoked or disabled on one instance takes effect on
//! every other at its next login. What cannot be asked for is an open
//! session: each change is announced with `NOTIFY` on [`CHANNEL`], and every
//! instance `LISTEN`s and ends its own sessions that used a revoked password
//! or belong to a disabled user ([`notify`]).

mod notify;
mod schema;
mod tls;

use super::password::{self, HashKey};
use super::standing::Sealer;
use super::{AppPassword, BoxFuture, Due, LastUse, SignIn, Standing, Store, StoreError, Verified};
use crate::config::StoreSettings;
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;
use tls::Rustls;
use tokio::sync::RwLock;
use tokio_postgres::{Client, Row};

/// Where instances announce changes.
pub const CHANNEL: &str = "oauthbearer_proxy_app_passwords";
/// One query, connection included, at most this long.
const TIMEOUT: Duration = Duration::from_secs(5);

const COLUMNS: &str = "p.id, p.owner, p.name, p.created, p.last_used, p.last_client, \
                       p.last_protocol, p.hash, COALESCE(u.disabled, FALSE), u.valid_until";

pub struct PgStore {
    config: tokio_postgres::Config,
    tls: Rustls,
    client: RwLock<Arc<Client>>,
    key: HashKey,
    sealer: Sealer,
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

/// `e` and what caused it ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Connects (TLS as the URL's `sslmode` says), driving the connection on
/// `handle`.
async fn connect(
    config: &tokio_postgres::Config,
    tls: &Rustls,
    handle: &tokio::runtime::Handle,
) -> Result<Client, StoreError> {
    let (client, connection) = tokio::time::timeout(TIMEOUT, config.connect(tls.clone()))
        .await
        .map_err(|_| unavailable("connecting timed out"))?
        .map_err(|e| unavailable(with_causes(&e)))?;
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
        let connector = crate::tls::connector(settings.ca.as_deref())
            .map_err(|e| StoreError::Invalid(format!("`store.ca`: {e}")))?;
        let tls = Rustls(connector);
        let handle = tokio::runtime::Handle::current();
        let mut client = connect(&config, &tls, &handle).await?;
        schema::migrate(&mut client).await.map_err(unavailable)?;
        let key = schema::hash_key(&client, settings.hash_key.as_ref()).await?;
        let listener = handle
            .spawn(notify::listen(config.clone(), tls.clone()))
            .abort_handle();
        Ok(Self {
            config,
            tls,
            client: RwLock::new(Arc::new(client)),
            sealer: Sealer::new(&key),
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
            *slot = Arc::new(connect(&self.config, &self.tls, &self.handle).await?);
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

fn record(r: &Row) -> Result<(Verified, Vec<u8>), tokio_postgres::Error> {
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
    let verified = Verified {
        password: p,
        disabled: r.try_get(8)?,
        valid_until: r.try_get(9)?,
    };
    Ok((verified, r.try_get(7)?))
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
                .map(|r| record(r).map(|(v, _)| v.password).map_err(unavailable))
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
            let (verified, stored) = record(row).map_err(unavailable)?;
            Ok(password::same(&stored, &hash).then_some(verified))
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
                 ON CONFLICT (owner) DO UPDATE SET disabled = $2, checked = $3, \
                 refresh = CASE WHEN $2 THEN NULL ELSE app_password_users.refresh END",
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

    fn standing<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Standing, StoreError>> {
        Box::pin(async move {
            let rows = self
                .query(
                    "SELECT disabled, refresh IS NOT NULL, valid_until \
                     FROM app_password_users WHERE owner = $1",
                    &[&user],
                )
                .await?;
            let Some(r) = rows.first() else {
                return Ok(Standing::default());
            };
            Ok(Standing {
                disabled: r.try_get(0).map_err(unavailable)?,
                checked: r.try_get(1).map_err(unavailable)?,
                valid_until: r.try_get(2).map_err(unavailable)?,
            })
        })
    }

    fn signed_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let sealed = match &s.refresh {
                Some(t) => Some(self.sealer.seal(s.user, t)?),
                None => None,
            };
            self.query(
                "INSERT INTO app_password_users \
                 (owner, disabled, checked, directory, refresh, valid_until, next_check) \
                 VALUES ($1, FALSE, $2, $3, $4, $5, $6) ON CONFLICT (owner) DO UPDATE SET \
                 disabled = FALSE, checked = $2, directory = $3, refresh = $4, \
                 valid_until = $5, next_check = $6",
                &[
                    &s.user,
                    &super::now(),
                    &s.directory,
                    &sealed,
                    &s.valid_until,
                    &s.next_check,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn due<'a>(
        &'a self,
        directory: &'a str,
        now: i64,
        next: i64,
    ) -> BoxFuture<'a, Result<Vec<Due>, StoreError>> {
        Box::pin(async move {
            // Row locks make concurrent claims by other instances skip
            // what this one took (READ COMMITTED re-checks `next_check`).
            let rows = self
                .query(
                    "UPDATE app_password_users SET next_check = $3 WHERE directory = $1 \
                     AND refresh IS NOT NULL AND NOT disabled AND next_check <= $2 \
                     RETURNING owner, refresh",
                    &[&directory, &now, &next],
                )
                .await?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<(String, Vec<u8>)>, tokio_postgres::Error>>()
                .map_err(unavailable)?;
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
            self.query(
                "UPDATE app_password_users SET checked = $2, valid_until = $3, \
                 refresh = COALESCE($4, refresh) WHERE owner = $1 AND NOT disabled",
                &[&user, &super::now(), &valid_until, &sealed],
            )
            .await
            .map(drop)
        })
    }
}
