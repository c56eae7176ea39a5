//! The provider's signing keys (RFC 7517 JWK Set) for local JWT validation.
//!
//! Fetched at start-up and refreshed in the background as the answer's
//! `Cache-Control: max-age` says (bounded to [`MIN_REFRESH`, `MAX_REFRESH`],
//! [`DEFAULT_REFRESH`] without one). A token signed with a `kid` the set does
//! not know triggers one refresh, at most once per [`FORCED_REFRESH_INTERVAL`],
//! so key rotation works without a restart and junk `kid`s cannot make the
//! proxy hammer the provider.

use super::discovery::Discovery;
use super::{http, Error, Stats};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

pub const MIN_REFRESH: Duration = Duration::from_secs(60);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);
/// After a failed fetch, logins that need a first key set fail at once for
/// this long instead of queueing behind one slow attempt after another.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);
/// More keys than any provider publishes; the rest are ignored.
const MAX_KEYS: usize = 64;

pub struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    pub key: DecodingKey,
}

/// A parsed key set. Keys this proxy cannot use (encryption keys,
/// unsupported types, symmetric keys) are left out.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
    loaded: bool,
}

/// The outcome of looking a token's key up.
pub enum Lookup<'a> {
    Found(&'a Key),
    /// No key with this `kid` (a refresh may find it).
    Unknown,
    /// The key exists but is for another algorithm family, or says another
    /// `alg`: algorithm confusion, refused.
    Mismatch,
    /// No `kid` and not exactly one key that fits.
    Ambiguous,
}

impl KeySet {
    pub fn parse(doc: &Map<String, Value>) -> KeySet {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                    .filter_map(|jwk| key(&jwk))
                    .take(MAX_KEYS)
                    .collect()
            })
            .unwrap_or_default();
        KeySet { keys, loaded: true }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let fits = |k: &Key| k.family == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if fits(k) => Lookup::Found(k),
                Some(_) => Lookup::Mismatch,
                None => Lookup::Unknown,
            },
            None => {
                let mut fitting = self.keys.iter().filter(|k| fits(k));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    _ => Lookup::Ambiguous,
                }
            }
        }
    }
}

fn key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let family = key.family();
    // Shared secrets never come from a published key set.
    if family == AlgorithmFamily::Hmac {
        return None;
    }
    let alg = match &jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key,
    })
}

/// Where the key set comes from.
pub enum Source {
    Url(String),
    Discovery(Arc<Discovery>),
}

pub struct Jwks {
    source: Source,
    http: reqwest::Client,
    stats: Arc<Stats>,
    directory: String,
    current: RwLock<Arc<KeySet>>,
    /// Serializes fetches.
    refresh: tokio::sync::Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    /// When the last unknown-`kid` refresh ran.
    forced: Option<Instant>,
    /// When the last fetch failed, and why.
    failed: Option<(Instant, String)>,
}

impl Jwks {
    pub fn new(source: Source, http: reqwest::Client, stats: Arc<Stats>, directory: &str) -> Self {
        Self {
            source,
            http,
            stats,
            directory: directory.to_string(),
            current: RwLock::new(Arc::new(KeySet::default())),
            refresh: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    /// The key set in use now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The key set, fetching it first if it was never loaded.
    pub async fn loaded(&self) -> Result<Arc<KeySet>, Error> {
        let set = self.current();
        if set.loaded {
            return Ok(set);
        }
        let mut fetches = self.refresh.lock().await;
        let set = self.current();
        if set.loaded {
            return Ok(set);
        }
        if let Some((at, why)) = &fetches.failed {
            if at.elapsed() < FAILURE_HOLD {
                return Err(Error::Unavailable(why.clone()));
            }
        }
        self.fetch_noting(&mut fetches).await.map(|(set, _)| set)
    }

    /// A refresh because a token names an unknown `kid`: at most one per
    /// [`FORCED_REFRESH_INTERVAL`]; logins waiting meanwhile share it.
    /// Returns the new set, or `None` when rate-limited.
    pub async fn refresh_for_unknown_kid(
        &self,
        seen: &Arc<KeySet>,
    ) -> Result<Option<Arc<KeySet>>, Error> {
        let mut fetches = self.refresh.lock().await;
        let set = self.current();
        if !Arc::ptr_eq(&set, seen) {
            return Ok(Some(set)); // someone else refreshed meanwhile
        }
        if fetches
            .forced
            .is_some_and(|t| t.elapsed() < FORCED_REFRESH_INTERVAL)
        {
            return Ok(None);
        }
        fetches.forced = Some(Instant::now());
        self.fetch_noting(&mut fetches)
            .await
            .map(|(set, _)| Some(set))
    }

    async fn fetch_noting(&self, fetches: &mut Fetches) -> Result<(Arc<KeySet>, Duration), Error> {
        let result = self.fetch().await;
        fetches.failed = match &result {
            Ok(_) => None,
            Err(e) => Some((Instant::now(), e.reason())),
        };
        result
    }

    async fn fetch(&self) -> Result<(Arc<KeySet>, Duration), Error> {
        let url = match &self.source {
            Source::Url(u) => u.clone(),
            Source::Discovery(d) => d
                .document(&self.http, &self.stats)
                .await?
                .jwks_uri
                .clone()
                .ok_or_else(|| {
                    Error::Unavailable("the discovery document has no jwks_uri".into())
                })?,
        };
        self.stats.jwks_fetch();
        let (doc, max_age) = http::get_json(&self.http, &url, &self.stats).await?;
        let set = Arc::new(KeySet::parse(&doc));
        if set.is_empty() {
            tracing::warn!(directory = %self.directory, "the JWKS at {url} has no usable signing key");
        } else {
            tracing::debug!(directory = %self.directory, keys = set.len(), "JWKS loaded from {url}");
        }
        match self.current.write() {
            Ok(mut g) => *g = set.clone(),
            Err(e) => *e.into_inner() = set.clone(),
        }
        let every = max_age
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_REFRESH)
            .clamp(MIN_REFRESH, MAX_REFRESH);
        Ok((set, every))
    }

    /// Fetches now, then keeps the set fresh until the validator is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(jwks) = weak.upgrade() else { return };
                    let result = {
                        let mut fetches = jwks.refresh.lock().await;
                        jwks.fetch_noting(&mut fetches).await
                    };
                    match result {
                        Ok((_, every)) => every,
                        Err(e) => {
                            tracing::warn!(directory = %jwks.directory, "JWKS refresh failed: {e}");
                            RETRY_AFTER_ERROR
                        }
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}
