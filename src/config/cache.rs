//! A directory's `cache.*` keys.

use super::*;

/// The token-result cache of one directory. `ttl` zero means every login
/// asks the provider (entries then only serve `stale-if-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: u64,
    pub stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 100_000,
            stale_if_error: Duration::ZERO,
        }
    }
}

impl CacheSettings {
    pub fn enabled(&self) -> bool {
        !(self.ttl.is_zero() && self.negative_ttl.is_zero() && self.stale_if_error.is_zero())
    }
}

pub(super) fn cache_settings(name: &str, raw: raw::RawCache) -> Result<CacheSettings> {
    let key = |k: &str| format!("directory.{name}.cache.{k}");
    let mut c = CacheSettings::default();
    if let Some(v) = raw.ttl {
        c.ttl = duration(&key("ttl"), &v)?;
    }
    if let Some(v) = raw.negative_ttl {
        c.negative_ttl = duration(&key("negative-ttl"), &v)?;
    }
    if let Some(v) = raw.stale_if_error {
        c.stale_if_error = duration(&key("stale-if-error"), &v)?;
    }
    if let Some(n) = raw.max_entries {
        if n == 0 {
            return Err(ConfigError::new(key("max-entries"), "must be at least 1"));
        }
        c.max_entries = n;
    }
    Ok(c)
}
