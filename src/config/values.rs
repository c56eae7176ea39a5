//! Values shared by every section: durations, URLs, secrets.

use super::*;

pub(super) fn duration(key: &str, value: &str) -> Result<Duration> {
    units::parse_duration(value).map_err(|e| ConfigError::new(key, e))
}

/// Resolves a secret value as read from the file: plain text (returned as
/// it is), `%{env:NAME}%` or `%{file:PATH}%` (file content with the
/// trailing newline trimmed). Every buffer that held the secret is a
/// [`Secret`], wiped when dropped.
pub fn resolve_secret(key: &str, value: Secret) -> Result<Secret> {
    let v = value.expose().trim();
    if let Some(name) = v.strip_prefix("%{env:").and_then(|r| r.strip_suffix("}%")) {
        return std::env::var(name).map(Secret::new).map_err(|_| {
            ConfigError::new(key, format!("environment variable `{name}` is not set"))
        });
    }
    if let Some(path) = v.strip_prefix("%{file:").and_then(|r| r.strip_suffix("}%")) {
        let mut text = std::fs::read_to_string(path)
            .map(Secret::new)
            .map_err(|e| ConfigError::new(key, format!("cannot read secret file {path}: {e}")))?;
        text.trim_end_in_place(&['\r', '\n']);
        return Ok(text);
    }
    Ok(value)
}
