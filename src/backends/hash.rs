//! Weighted rendezvous (highest-random-weight) hashing: every backend
//! scores the user, the highest score wins. The score depends only on the
//! backend's name, its weight and the user, so every proxy instance picks
//! the same backend with no shared state, and adding a backend moves only
//! the users it now wins: about 1/(n+1) of them.
//!
//! Score (Schindelhauer & Schomaker's logarithmic method, as used by
//! weighted HRW implementations): `weight / -ln(u)` where `u` in (0, 1) is
//! the first 53 bits of SHA-256(backend name ‖ 0 ‖ user). SHA-256 (already
//! a dependency) is fixed by its standard, so the mapping cannot change
//! between versions or platforms; the tests pin a few values.

use crate::config::Backend;
use sha2::{Digest, Sha256};

/// The backend's score for `user`.
pub fn score(backend: &str, weight: u32, user: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(backend.as_bytes())
        .chain_update([0u8])
        .chain_update(user.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bits = u64::from_be_bytes(first) >> 11;
    // (0, 1): never 0, never 1.
    let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// The backends' indices from the user's first choice to the last.
pub fn order(list: &[Backend], user: &str) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = list
        .iter()
        .enumerate()
        .map(|(i, b)| (score(&b.name, b.weight, user), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The user's backend.
pub fn pick(list: &[Backend], user: &str) -> usize {
    order(list, user).first().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(names: &[(&str, u32)]) -> Vec<Backend> {
        names
            .iter()
            .map(|(n, w)| Backend {
                name: n.to_string(),
                address: format!("{n}:143"),
                weight: *w,
                tls_name: n.to_string(),
            })
            .collect()
    }

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user{i}@example.com")).collect()
    }

    #[test]
    fn adding_a_third_backend_moves_about_a_third() {
        let two = backends(&[("mail1", 1), ("mail2", 1)]);
        let three = backends(&[("mail1", 1), ("mail2", 1), ("mail3", 1)]);
        let users = users(300);
        let mut moved = 0;
        for u in &users {
            let (before, after) = (pick(&two, u), pick(&three, u));
            if before != after {
                moved += 1;
                // A user only ever moves to the new backend.
                assert_eq!(three[after].name, "mail3", "{u}");
            }
        }
        let fraction = moved as f64 / users.len() as f64;
        println!("hash 2 -> 3 backends: {moved} of 300 users moved, fraction {fraction:.3}");
        assert!((0.2..=0.45).contains(&fraction), "{fraction}");
    }

    #[test]
    fn removing_a_backend_moves_only_its_users() {
        let three = backends(&[("mail1", 1), ("mail2", 1), ("mail3", 1)]);
        let two = backends(&[("mail1", 1), ("mail3", 1)]);
        for u in users(500) {
            let before = &three[pick(&three, &u)].name;
            let after = &two[pick(&two, &u)].name;
            if before != "mail2" {
                assert_eq!(before, after, "{u}");
            }
        }
    }

    #[test]
    fn weights_share_the_users() {
        let list = backends(&[("light", 1), ("heavy", 3)]);
        let users = users(4000);
        let heavy = users.iter().filter(|u| pick(&list, u) == 1).count();
        let share = heavy as f64 / users.len() as f64;
        assert!((0.70..=0.80).contains(&share), "{share}");
    }

    #[test]
    fn order_is_a_permutation_and_stable() {
        let list = backends(&[("a", 1), ("b", 2), ("c", 1)]);
        let mut o = order(&list, "alice@example.com");
        assert_eq!(o, order(&list, "alice@example.com"));
        o.sort();
        assert_eq!(o, vec![0, 1, 2]);
    }
}
