//! A listener's ordered list of directories: which one validates a token.

use super::{jwt, Error, Identity, Validator};
use crate::config::IdentityField;
use crate::secret::Secret;
use std::sync::Arc;

/// A listener's directories, in configured order.
pub struct Directories {
    pub(super) list: Vec<Arc<Validator>>,
}

impl Directories {
    /// `list` must not be empty (the configuration guarantees it).
    pub fn new(list: Vec<Arc<Validator>>) -> Self {
        Self { list }
    }

    /// The first directory: its scope and discovery URL go into error challenges.
    pub fn primary(&self) -> Option<&Arc<Validator>> {
        self.list.first()
    }

    pub fn get(&self, index: usize) -> Option<&Arc<Validator>> {
        self.list.get(index)
    }

    /// The name of the directory at `index` (`-` when there is none).
    pub fn name(&self, index: usize) -> &str {
        self.list.get(index).map_or("-", |v| v.name())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Validator>> {
        self.list.iter()
    }

    /// Starts every directory's background work.
    pub fn start(&self) {
        for v in &self.list {
            v.start();
        }
    }

    /// A JWT goes to the directory whose `issuer` is its `iss`; anything
    /// else tries the directories in order: the first that accepts wins.
    /// When none accepts and one could not answer, that is a temporary
    /// failure (the token may be good there). Returns the index of the
    /// directory that answered with the result.
    pub async fn validate(
        &self,
        token: &Secret,
        need: IdentityField,
    ) -> (usize, Result<Arc<Identity>, Error>) {
        if self.list.len() > 1 {
            if let Some(iss) = jwt::unverified_issuer(token.expose()) {
                let iss = iss.trim_end_matches('/');
                if let Some((i, v)) = self
                    .list
                    .iter()
                    .enumerate()
                    .find(|(_, v)| v.issuer().is_some_and(|i| i.trim_end_matches('/') == iss))
                {
                    return (i, v.validate(token, need).await);
                }
            }
        }
        let mut unavailable = None;
        let mut refused = None;
        for (i, v) in self.list.iter().enumerate() {
            match v.validate(token, need).await {
                Ok(identity) => return (i, Ok(identity)),
                Err(e @ Error::Unavailable(_)) => {
                    unavailable.get_or_insert((i, e));
                }
                Err(e @ Error::Rejected(_)) => {
                    refused.get_or_insert((i, e));
                }
            }
        }
        match unavailable.or(refused) {
            Some((i, e)) => (i, Err(e)),
            None => (
                0,
                Err(Error::Unavailable("the listener has no directory".into())),
            ),
        }
    }
}
