//! Which backend a user belongs to, from the configuration alone (no
//! health): `hash`, `claim` or `map`, with the fallback for a user the map
//! does not list or whose token has no such claim. Pure, so `route USER`
//! and the login path give the same answer.

use super::hash;
use crate::config::{Backends, Fallback, Routing};

/// What a user is routed by.
#[derive(Debug, Clone, Copy)]
pub struct RouteKey<'a> {
    /// The user as the upstream knows it (after `identity-case`).
    pub user: &'a str,
    /// The value of the routing claim in the user's token, if any.
    pub claim: Option<&'a str>,
}

/// The user's backend and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into the upstream's backends.
    pub home: usize,
    pub why: String,
}

/// Why no backend could be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unroutable {
    /// The claim names no configured backend: a temporary failure, never
    /// a guess (the provider or the configuration is behind).
    UnknownBackend { claim: String, value: String },
    /// The user is not in the map / has no claim, and `fallback = "refuse"`.
    Refused(String),
}

impl std::fmt::Display for Unroutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unroutable::UnknownBackend { claim, value } => write!(
                f,
                "the token's claim `{claim}` = {value:?} names no configured backend"
            ),
            Unroutable::Refused(why) => write!(f, "{why}, and routing.fallback = \"refuse\""),
        }
    }
}

/// Routes `key` among `backends`.
pub fn route(backends: &Backends, key: RouteKey<'_>) -> Result<Route, Unroutable> {
    if backends.list.len() == 1 {
        return Ok(Route {
            home: 0,
            why: "the upstream's only backend".into(),
        });
    }
    let missing = match &backends.routing {
        Routing::Hash => return Ok(hashed(backends, key.user, "rendezvous hash of the user")),
        Routing::Claim(claim) => match key.claim {
            Some(value) => {
                return match backends.find(value) {
                    Some(home) => Ok(Route {
                        home,
                        why: format!("the token's claim `{claim}` = {value:?}"),
                    }),
                    None => Err(Unroutable::UnknownBackend {
                        claim: claim.clone(),
                        value: printable(value),
                    }),
                }
            }
            None => format!("the token has no claim `{claim}`"),
        },
        Routing::Map(map) => match map.get(key.user) {
            Some(home) => {
                return Ok(Route {
                    home,
                    why: format!("listed in {}", map.path.display()),
                })
            }
            None => format!("not listed in {}", map.path.display()),
        },
    };
    match backends.fallback {
        Fallback::Hash => Ok(hashed(
            backends,
            key.user,
            &format!("{missing}: rendezvous hash of the user (routing.fallback)"),
        )),
        Fallback::Refuse => Err(Unroutable::Refused(missing)),
    }
}

fn hashed(backends: &Backends, user: &str, why: &str) -> Route {
    Route {
        home: hash::pick(&backends.list, user),
        why: why.to_string(),
    }
}

/// A claim value made safe for a log line.
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, UserMap};
    use std::sync::Arc;

    fn group(routing: Routing, fallback: Fallback) -> Backends {
        Backends {
            list: ["mail1", "mail2"]
                .iter()
                .enumerate()
                .map(|(i, n)| Backend {
                    name: n.to_string(),
                    address: format!("10.0.0.{}:143", i + 11),
                    weight: 1,
                    tls_name: n.to_string(),
                })
                .collect(),
            routing,
            fallback,
            failover: false,
            health: None,
        }
    }

    fn key<'a>(user: &'a str, claim: Option<&'a str>) -> RouteKey<'a> {
        RouteKey { user, claim }
    }

    #[test]
    fn claim_names_a_backend_by_name_or_address() {
        let g = group(Routing::Claim("mailhost".into()), Fallback::Refuse);
        assert_eq!(route(&g, key("a", Some("mail2"))).unwrap().home, 1);
        assert_eq!(route(&g, key("a", Some("10.0.0.11:143"))).unwrap().home, 0);
        let e = route(&g, key("a", Some("mail9\r\n"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the token's claim `mailhost` = \"mail9\" names no configured backend"
        );
        let e = route(&g, key("a", None)).unwrap_err();
        assert!(matches!(e, Unroutable::Refused(_)), "{e}");
    }

    #[test]
    fn missing_claim_falls_back_to_the_hash() {
        let g = group(Routing::Claim("mailhost".into()), Fallback::Hash);
        let r = route(&g, key("alice@example.com", None)).unwrap();
        assert_eq!(r.home, hash::pick(&g.list, "alice@example.com"));
        assert!(r.why.contains("no claim `mailhost`"), "{}", r.why);
    }

    #[test]
    fn map_then_fallback() {
        let mut users = std::collections::BTreeMap::new();
        users.insert("alice@example.com".to_string(), 1);
        let map = Arc::new(UserMap {
            path: "/etc/users.map".into(),
            users,
            folded: true,
        });
        let g = group(Routing::Map(map.clone()), Fallback::Refuse);
        let r = route(&g, key("Alice@example.com", None)).unwrap();
        assert_eq!((r.home, r.why.as_str()), (1, "listed in /etc/users.map"));
        let e = route(&g, key("bob@example.com", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not listed in /etc/users.map, and routing.fallback = \"refuse\""
        );
        let g = group(Routing::Map(map), Fallback::Hash);
        assert!(route(&g, key("bob@example.com", None)).is_ok());
    }
}
