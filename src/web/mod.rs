//! The self-service site (issue 14): an `https` listener where a user signs
//! in at the organisation's OpenID provider and manages their app
//! passwords; Mozilla autoconfig and Apple configuration profiles for mail
//! clients. Server-rendered HTML (minijinja templates), no JavaScript.
//!
//! - this file: the site's state, its routes, cookies;
//! - [`flow`]: the OpenID Connect code flow (PKCE, state, nonce), refresh;
//! - [`idtoken`]: ID token validation;
//! - [`pages`]: the handlers; [`signin`]: sign-in and sign-out;
//! - [`setup`]: autoconfig and `.mobileconfig`;
//! - [`standing`]: the standing check (the store keeps the refresh tokens);
//! - [`crypto`], [`state`], [`serve`]: HMAC and random values, what is
//!   remembered between requests, TLS + HTTP/1.1 serving;
//! - [`sites`]: the running sites, swapped on reload.

pub mod crypto;
pub mod flow;
pub mod idtoken;
pub(crate) mod pages;
pub mod serve;
pub mod setup;
mod signin;
pub mod sites;
pub mod standing;
pub mod state;

use crate::apppass::Store;
use crate::config::{
    AppPasswordSettings, Config, Fields, IdentityCase, IdentityField, WebListener,
};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-session";
/// The sign-in under way (its `state`), bound to the browser.
pub const SIGNIN_COOKIE: &str = "__Host-signin";

/// Everything the handlers share.
pub struct Site {
    pub provider: Arc<flow::Provider>,
    pub fields: Fields,
    pub identity: IdentityField,
    pub case: IdentityCase,
    pub signer: Arc<crypto::Signer>,
    pub flows: Arc<state::Expiring<state::Flow>>,
    pub sessions: Arc<state::Expiring<state::Session>>,
    pub store: Arc<dyn Store>,
    /// The directory users sign in with, and its `app-passwords.*`.
    pub directory: String,
    pub app_passwords: AppPasswordSettings,
    pub services: Vec<setup::MailService>,
    pub hostname: String,
    templates: minijinja::Environment<'static>,
}

/// The redirect URI of `listener`: `<public-url>oidc/callback`, or
/// `https://<server hostname>:<port>/oidc/callback`.
pub fn redirect_uri(listener: &WebListener, hostname: &str) -> String {
    match &listener.public_url {
        Some(base) => format!("{base}oidc/callback"),
        None => {
            let port = listener.binds.first().map_or(443, |b| b.port());
            format!("https://{hostname}:{port}/oidc/callback")
        }
    }
}

impl Site {
    /// The site of `listener`, with the app-password `store` (which also
    /// keeps the refresh tokens for the standing check).
    pub fn new(
        config: &Config,
        listener: &WebListener,
        store: Arc<dyn Store>,
    ) -> Result<Self, String> {
        let directory = config
            .directories
            .get(&listener.directory)
            .ok_or_else(|| format!("no directory `{}`", listener.directory))?;
        let redirect = redirect_uri(listener, &config.server.hostname);
        let provider = flow::Provider::new(directory, redirect)?
            .map(Arc::new)
            .ok_or_else(|| format!("directory `{}` has no client.id", directory.name))?;
        let signer = match &listener.cookie_key {
            Some(k) => crypto::Signer::new(k.expose().as_bytes()),
            None => crypto::Signer::random().map_err(|e| e.to_string())?,
        };
        let signer = Arc::new(signer);
        let (identity, case) = identity_of(config, &listener.directory);
        Ok(Self {
            provider,
            fields: directory.fields.clone(),
            identity,
            case,
            signer,
            flows: Arc::new(state::Expiring::new(state::FLOW_TTL)),
            sessions: Arc::new(state::Expiring::new(state::SESSION_TTL)),
            store,
            directory: directory.name.clone(),
            app_passwords: directory.app_passwords.clone(),
            services: setup::services(config),
            hostname: config.server.hostname.clone(),
            templates: templates()?,
        })
    }

    /// Takes over what `old` (the same listener before a reload) holds
    /// for its browsers: sign-ins under way and sessions, with the signing
    /// key when it is the same one (`same_key`: the configured key did not
    /// change, or none is configured). Sessions only while users still
    /// sign in with the same directory.
    pub fn carry_over(&mut self, old: &Site, same_key: bool) {
        if !same_key {
            return;
        }
        self.signer = old.signer.clone();
        self.flows = old.flows.clone();
        if old.directory == self.directory {
            self.sessions = old.sessions.clone();
        }
    }

    /// Renders the page `name` with `context`.
    pub fn render(&self, name: &str, context: minijinja::Value) -> Result<String, String> {
        self.templates
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| format!("template {name}: {e}"))
    }
}

/// Which field names the upstream user, and how its case is treated: as
/// the upstream of the first mail listener that uses `directory` says
/// (default: the email, lower-case required).
fn identity_of(config: &Config, directory: &str) -> (IdentityField, IdentityCase) {
    config
        .listeners
        .iter()
        .filter(|l| l.directories.iter().any(|d| d == directory))
        .find_map(|l| config.upstreams.get(&l.upstream))
        .map_or((IdentityField::Email, IdentityCase::default()), |u| {
            (u.identity, u.identity_case)
        })
}

fn templates() -> Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("home.html", include_str!("templates/home.html")),
        ("list.html", include_str!("templates/list.html")),
        ("created.html", include_str!("templates/created.html")),
        ("refused.html", include_str!("templates/refused.html")),
    ] {
        env.add_template(name, text).map_err(|e| e.to_string())?;
    }
    Ok(env)
}

/// Every route of the site.
pub fn router(site: Arc<Site>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(signin::start))
        .route("/oidc/callback", get(signin::callback))
        .route("/signout", post(signin::signout))
        .route("/app-passwords", post(pages::create))
        .route("/app-passwords/revoke", post(pages::revoke))
        .route("/profile", post(pages::profile))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(pages::autoconfig),
        )
        .route("/mail/config-v1.1.xml", get(pages::autoconfig))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(site)
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: Secure, HttpOnly, SameSite=Lax, Path=/.
pub fn set_cookie(name: &str, value: &str, max_age: std::time::Duration) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        max_age.as_secs()
    )
}

#[cfg(test)]
pub mod tests;
