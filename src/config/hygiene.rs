//! The access-token hygiene settings (issue 11): which tokens a directory
//! may accept at all, and how an identity's letter case is handled.
//!
//! - A directory must say which tokens are meant for mail: `audience` or
//!   `required-scope`, or `allow-any-audience = true` to accept, knowingly,
//!   a token issued to any application of the provider.
//! - A UserInfo answer names no audience, so `audience` cannot be checked
//!   there, and its `required-scope` is checked through the claims a
//!   standard OpenID scope releases (OpenID Connect Core §5.4): only those
//!   scopes can be required on a `userinfo` directory.
//! - `identity-case` on an upstream: see [`IdentityCase`].

use super::{ConfigError, Result};

/// The scopes OpenID Connect Core §5.4 defines, whose claims a UserInfo
/// answer shows (`openid` gives `sub`).
pub const USERINFO_SCOPES: &[&str] = &["openid", "email", "profile", "address", "phone"];

/// How the identity's letter case reaches the upstream. Dovecot folds user
/// names to lower case by default (`auth_username_format = %Lu`), so
/// "Bob@example.com" and "bob@example.com" open the same mailbox: a
/// provider that keeps them as two accounts would give two people one
/// mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityCase {
    /// `"require-lower"` (default): an identity with an upper-case letter is
    /// refused, so what reaches the upstream is already folded and no two
    /// provider accounts can meet in one mailbox, whatever the provider does.
    #[default]
    RequireLower,
    /// `"lower"`: ASCII letters are lower-cased, as Dovecot does. Only for a
    /// provider whose identities are unique regardless of case.
    Lower,
    /// `"exact"`: passed unchanged and compared exactly, for an upstream that
    /// does not fold case (Dovecot with `auth_username_format = %u`).
    Exact,
}

impl IdentityCase {
    /// The identity the upstream logs in with, or why it is refused.
    pub fn apply(self, identity: &str) -> std::result::Result<String, String> {
        match self {
            IdentityCase::RequireLower if identity.chars().any(char::is_uppercase) => Err(format!(
                "identity {identity:?} has upper-case letters, which the upstream folds: it could \
                 name another account's mailbox (set the upstream's identity-case = \"lower\" if \
                 the provider's identities are unique regardless of case)"
            )),
            IdentityCase::Lower => Ok(identity.to_ascii_lowercase()),
            _ => Ok(identity.to_string()),
        }
    }

    /// Whether a client-given authorization identity names `identity`, as
    /// the upstream compares user names.
    pub fn same(self, claimed: &str, identity: &str) -> bool {
        match self {
            IdentityCase::Exact => claimed == identity,
            _ => claimed.eq_ignore_ascii_case(identity),
        }
    }
}

pub(super) fn identity_case(key: &str, value: Option<&str>) -> Result<IdentityCase> {
    match value {
        None | Some("require-lower") => Ok(IdentityCase::RequireLower),
        Some("lower") => Ok(IdentityCase::Lower),
        Some("exact") => Ok(IdentityCase::Exact),
        Some(other) => Err(ConfigError::new(
            key,
            format!("`{other}` is not one of \"require-lower\", \"lower\", \"exact\""),
        )),
    }
}

/// What a directory says about the tokens it accepts.
pub(super) struct Policy<'a> {
    pub name: &'a str,
    pub method: &'a str,
    pub audience: Option<&'a str>,
    pub required_scope: Option<&'a str>,
    pub allow_any_audience: bool,
}

/// Refuses a directory that would accept any application's token, and
/// audience/scope settings its method cannot check.
pub(super) fn check_policy(p: &Policy<'_>) -> Result<()> {
    let key = |k: &str| format!("directory.{}.{k}", p.name);
    if p.method == "userinfo" {
        if p.audience.is_some() {
            return Err(ConfigError::new(
                key("audience"),
                "cannot be checked on a userinfo directory (a UserInfo answer names no \
                 audience); use `required-scope`, or endpoint.method = \"introspect\" or \"jwt\"",
            ));
        }
        if let Some(scope) = p.required_scope {
            if !USERINFO_SCOPES.contains(&scope) {
                return Err(ConfigError::new(
                    key("required-scope"),
                    format!(
                        "`{scope}` cannot be checked on a userinfo directory: a UserInfo answer \
                         shows only the claims of the standard scopes ({}); use \
                         endpoint.method = \"introspect\" or \"jwt\" for a scope of your own",
                        USERINFO_SCOPES.join(", ")
                    ),
                ));
            }
        }
    }
    if p.audience.is_none() && p.required_scope.is_none() && !p.allow_any_audience {
        return Err(ConfigError::new(
            format!("directory.{}", p.name),
            "sets neither `audience` nor `required-scope`, so a token the provider issued to \
             any other application would open the mailbox: set one of them, or \
             `allow-any-audience = true` to accept that knowingly",
        ));
    }
    Ok(())
}

/// The loud warning for a directory that says `allow-any-audience = true`
/// (`checked`: it sets `audience` or `required-scope` all the same).
pub fn any_audience_warning(name: &str, checked: bool) -> String {
    if checked {
        return format!(
            "directory.{name}: allow-any-audience = true is written, but `audience` or \
             `required-scope` is set and still checked: remove allow-any-audience"
        );
    }
    format!(
        "directory.{name}: allow-any-audience = true: a token the provider issued to ANY \
         application (not only mail clients) opens the mailbox; set `audience` or \
         `required-scope` instead"
    )
}
