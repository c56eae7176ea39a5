//! An in-memory [`Store`] and [`Keeper`]: for tests, and what the site uses
//! until the persistent stores (`crate::apppass`, SQLite/PostgreSQL) are
//! wired in. Nothing survives a restart; passwords are kept only as their
//! SHA-256.

use super::crypto;
use super::standing::Keeper;
use crate::apppass::{AppPassword, BoxFuture, Store, StoreError};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Memory {
    passwords: Mutex<Vec<(AppPassword, Vec<u8>)>>,
    refresh: Mutex<BTreeMap<String, Secret>>,
    next: Mutex<u64>,
}

/// 20 random bytes (160 bits) in lower-case base32 without padding: 32
/// letters and digits, easy to type.
pub fn new_password() -> Result<String, StoreError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes = crypto::random_bytes(20).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let mut bits = 0u32;
    let mut acc = 0u32;
    let mut out = String::with_capacity(32);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    Ok(out)
}

impl Memory {
    /// Whether `password` is one of `user`'s (what the login path asks).
    pub fn check(&self, user: &str, password: &str) -> bool {
        let hash = digest(password);
        let list = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().any(|(p, h)| p.user == user && *h == hash)
    }

    /// The refresh token kept for `user` (tests).
    pub fn refresh_token(&self, user: &str) -> Option<String> {
        let map = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        map.get(user).map(|s| s.expose().to_string())
    }
}

fn digest(password: &str) -> Vec<u8> {
    let clean: String = password.chars().filter(|c| !c.is_whitespace()).collect();
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, clean.as_bytes())
        .as_ref()
        .to_vec()
}

fn now() -> i64 {
    super::signin::now()
}

impl Store for Memory {
    fn create<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(AppPassword, Secret), StoreError>> {
        Box::pin(async move {
            let password = new_password()?;
            let id = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                *next += 1;
                next.to_string()
            };
            let record = AppPassword {
                id,
                user: user.to_string(),
                name: name.to_string(),
                created: now(),
                last_used: None,
            };
            let mut list = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
            list.push((record.clone(), digest(&password)));
            Ok((record, Secret::new(password)))
        })
    }

    fn list<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<AppPassword>, StoreError>> {
        Box::pin(async move {
            let list = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
            Ok(list
                .iter()
                .filter(|(p, _)| p.user == user)
                .map(|(p, _)| p.clone())
                .collect())
        })
    }

    fn revoke<'a>(
        &'a self,
        user: &'a str,
        id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut list = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
            let before = list.len();
            list.retain(|(p, _)| !(p.user == user && id.is_none_or(|id| p.id == id)));
            Ok(before - list.len())
        })
    }
}

impl Keeper for Memory {
    fn keep<'a>(
        &'a self,
        user: &'a str,
        refresh: Option<Secret>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut map = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
            match refresh {
                Some(t) => map.insert(user.to_string(), t),
                None => map.remove(user),
            };
            Ok(())
        })
    }

    fn kept(&self) -> BoxFuture<'_, Result<Vec<(String, Secret)>, StoreError>> {
        Box::pin(async move {
            let map = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
            Ok(map.iter().map(|(u, s)| (u.clone(), s.clone())).collect())
        })
    }
}
