//! Values shared by every section: durations, URLs, secrets.

use super::*;

pub(super) fn duration(key: &str, value: &str) -> Result<Duration> {
    units::parse_duration(value).map_err(|e| ConfigError::new(key, e))
}

/// Resolves a secret value: plain text, `%{env:NAME}%` or `%{file:PATH}%`
/// (file content with the trailing newline trimmed).
pub fn resolve_secret(key: &str, value: &str) -> Result<Secret> {
    let v = value.trim();
    if let Some(name) = v.strip_prefix("%{env:").and_then(|r| r.strip_suffix("}%")) {
        return std::env::var(name).map(Secret::new).map_err(|_| {
            ConfigError::new(key, format!("environment variable `{name}` is not set"))
        });
    }
    if let Some(path) = v.strip_prefix("%{file:").and_then(|r| r.strip_suffix("}%")) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(key, format!("cannot read secret file {path}: {e}")))?;
        return Ok(Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    Ok(Secret::new(value))
}
