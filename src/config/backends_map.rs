//! `routing.map`: a file of `user backend` lines, read when the
//! configuration is loaded (at start, by `check` and on every reload).
//!
//! One user per line, separated from the backend's name by spaces or tabs;
//! `#` starts a comment; blank lines are skipped. A line that does not
//! parse, a user listed twice or a backend that is not configured is an
//! error naming the line.

use super::backends::{Backend, UserMap};
use super::{ConfigError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads and parses the map file at `path`.
pub(super) fn load(key: &str, path: &Path, list: &[Backend], folded: bool) -> Result<UserMap> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let users = parse(&text, list, folded)
        .map_err(|why| ConfigError::new(key, format!("{}: {why}", path.display())))?;
    Ok(UserMap {
        path: path.to_path_buf(),
        users,
        folded,
    })
}

/// The map's lines → user → index of the backend in `list`.
pub(super) fn parse(
    text: &str,
    list: &[Backend],
    folded: bool,
) -> std::result::Result<BTreeMap<String, usize>, String> {
    let mut users = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = n + 1;
        let mut words = line.split_whitespace();
        let (Some(user), Some(backend), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {at}: expected `user backend`"));
        };
        let Some(index) = list.iter().position(|b| b.name == backend) else {
            return Err(format!("line {at}: no backend is named `{backend}`"));
        };
        let user = if folded {
            user.to_ascii_lowercase()
        } else {
            user.to_string()
        };
        if users.insert(user.clone(), index).is_some() {
            return Err(format!("line {at}: `{user}` is listed twice"));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<Backend> {
        ["mail1", "mail2"]
            .iter()
            .map(|n| Backend {
                name: n.to_string(),
                address: format!("{n}:143"),
                weight: 1,
                tls_name: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn parses_lines_comments_and_case() {
        let text = "# users\nalice@example.com mail1\n\n  Bob@Example.com\tmail2  # moved\n";
        let users = parse(text, &list(), true).unwrap();
        assert_eq!(users.get("alice@example.com"), Some(&0));
        assert_eq!(users.get("bob@example.com"), Some(&1));
        let exact = parse(text, &list(), false).unwrap();
        assert_eq!(exact.get("Bob@Example.com"), Some(&1));
    }

    #[test]
    fn refuses_what_does_not_parse() {
        for (text, why) in [
            ("alice mail3\n", "line 1: no backend is named `mail3`"),
            ("\nalice\n", "line 2: expected `user backend`"),
            ("alice mail1 extra\n", "line 1: expected `user backend`"),
            (
                "alice mail1\nALICE mail2\n",
                "line 2: `alice` is listed twice",
            ),
        ] {
            assert_eq!(parse(text, &list(), true).unwrap_err(), why, "{text:?}");
        }
    }
}
