//! The pages of a signed-in user: the list of app passwords, creating one
//! (shown once, grouped for typing, with an Apple profile to download),
//! revoking one or all; and the autoconfig document. Every form carries a
//! CSRF token: the HMAC of the session id (a form from another site cannot
//! know it).

use super::flow::Refusal;
use super::setup;
use super::signin::redirect;
use super::state::Session;
use super::{cookie, Site, SESSION_COOKIE};
use crate::apppass::AppPassword;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

/// The signed-in session of the request, with its id.
pub fn signed_in(site: &Site, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = site
        .signer
        .open("session", cookie(headers, SESSION_COOKIE)?)?;
    Some((id.to_string(), site.sessions.get(id)?))
}

pub fn csrf_ok(site: &Site, session_id: &str, token: Option<&str>) -> bool {
    token.is_some_and(|t| site.signer.verify("csrf", session_id, t))
}

/// The refusal page; the reason goes to the log.
pub fn refused(site: &Site, why: Refusal) -> Response {
    tracing::warn!("web: refused: {why}");
    let status = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST);
    page(
        site,
        status,
        "refused.html",
        context! { message => why.title() },
    )
}

fn page(site: &Site, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ];
    match site.render(name, ctx) {
        Ok(html) => (status, headers, html).into_response(),
        Err(e) => {
            tracing::error!("web: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

pub async fn home(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    let Some((id, session)) = signed_in(&site, &headers) else {
        return page(&site, StatusCode::OK, "home.html", context! {});
    };
    let found = match site.store.list(&session.user).await {
        Ok(list) => site.store.standing(&session.user).await.map(|s| (list, s)),
        Err(e) => Err(e),
    };
    match found {
        Ok((list, standing)) => {
            let rows: Vec<_> = list.iter().map(row).collect();
            let ctx = context! {
                user => session.email.as_deref().unwrap_or(&session.user),
                name => session.name,
                csrf => site.signer.mac("csrf", &id),
                passwords => rows,
                checked => standing.checked,
                every => every(site.app_passwords.standing_check),
                valid_until => standing.valid_until.map(date),
            };
            page(&site, StatusCode::OK, "list.html", ctx)
        }
        Err(e) => refused(&site, Refusal::Store(e.to_string())),
    }
}

/// A list row: dates in UTC, last use with client address and protocol.
fn row(p: &AppPassword) -> minijinja::Value {
    let last = p.last_used.as_ref().map(|u| {
        format!(
            "{} from {} ({})",
            date(u.at),
            u.client,
            u.protocol.to_uppercase()
        )
    });
    context! { id => &p.id, name => &p.name, created => date(p.created), last_used => last }
}

/// `YYYY-MM-DD HH:MM UTC`.
pub fn date(secs: i64) -> String {
    format!("{} UTC", crate::apppass::utc(secs))
}

/// A standing-check interval in words: "15 minutes", "1 hour", "30 seconds".
pub fn every(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The password in groups of four for typing (whatever separators the
/// store put in).
pub fn grouped(password: &str) -> String {
    let chars: Vec<char> = password
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: Option<String>,
    name: Option<String>,
}

pub async fn create(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    let Some((id, session)) = signed_in(&site, &headers) else {
        return redirect("/", &[]);
    };
    if !csrf_ok(&site, &id, form.csrf.as_deref()) {
        return refused(&site, Refusal::Csrf);
    }
    let name: String = form
        .name
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let name = if name.is_empty() {
        "Mail app".to_string()
    } else {
        name
    };
    match site.store.create(&session.user, &name).await {
        Ok((_, password)) => {
            tracing::info!(user = %session.user, "web: app password created");
            let ctx = context! {
                name => name,
                grouped => grouped(password.expose()),
                password => password.expose(),
                login => session.email.as_deref().unwrap_or(&session.user),
                csrf => site.signer.mac("csrf", &id),
                profile => setup::profile_possible(&site.services),
            };
            page(&site, StatusCode::OK, "created.html", ctx)
        }
        Err(e) => refused(&site, Refusal::Store(e.to_string())),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
    id: Option<String>,
    all: Option<String>,
}

pub async fn revoke(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let Some((sid, session)) = signed_in(&site, &headers) else {
        return redirect("/", &[]);
    };
    if !csrf_ok(&site, &sid, form.csrf.as_deref()) {
        return refused(&site, Refusal::Csrf);
    }
    let which = if form.all.is_some() {
        None
    } else {
        form.id.as_deref()
    };
    if which.is_none() && form.all.is_none() {
        return redirect("/", &[]);
    }
    match site.store.revoke(&session.user, which).await {
        Ok(n) => {
            tracing::info!(user = %session.user, revoked = n, "web: app passwords revoked");
            redirect("/", &[])
        }
        Err(e) => refused(&site, Refusal::Store(e.to_string())),
    }
}

#[derive(Deserialize)]
pub struct ProfileForm {
    csrf: Option<String>,
    name: Option<String>,
    password: Option<String>,
    inline: Option<String>,
}

pub async fn profile(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(form): Form<ProfileForm>,
) -> Response {
    let Some((sid, session)) = signed_in(&site, &headers) else {
        return redirect("/", &[]);
    };
    if !csrf_ok(&site, &sid, form.csrf.as_deref()) {
        return refused(&site, Refusal::Csrf);
    }
    let (Ok(a), Ok(b)) = (setup::uuid(), setup::uuid()) else {
        return refused(&site, Refusal::Unavailable("no random numbers".into()));
    };
    let name = form.name.unwrap_or_default();
    let email = session.email.as_deref().unwrap_or(&session.user);
    let identifier = format!("{}.{}", reverse(&site.hostname), a.to_lowercase());
    let p = setup::Profile {
        email,
        user: email,
        name: &name,
        password: form
            .inline
            .is_some()
            .then_some(())
            .and(form.password.as_deref()),
        uuids: [a, b],
        identifier: &identifier,
    };
    match setup::mobileconfig(&p, &site.services) {
        Some(xml) => (
            [
                (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"mail.mobileconfig\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            xml,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no IMAP and SMTP TLS listeners\n").into_response(),
    }
}

/// `mail.example.com` → `com.example.mail` (a profile identifier).
fn reverse(host: &str) -> String {
    host.split('.').rev().collect::<Vec<_>>().join(".")
}

#[derive(Deserialize)]
pub struct AutoconfigQuery {
    emailaddress: Option<String>,
}

pub async fn autoconfig(
    State(site): State<Arc<Site>>,
    Query(q): Query<AutoconfigQuery>,
) -> Response {
    let domain = q
        .emailaddress
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| site.hostname.clone());
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        setup::autoconfig(&domain, &site.services),
    )
        .into_response()
}
