//! Signing in (the OpenID Connect code flow) and out.
//!
//! `/signin` remembers a fresh `state` (with its `nonce` and PKCE verifier)
//! server-side and in a signed cookie, then sends the browser to the
//! provider. `/oidc/callback` requires the same `state` in the query and the
//! cookie, uses it up, redeems the code with the verifier, verifies the ID
//! token, maps its claims through `fields.*` and only then creates a
//! session (and hands the refresh token to the keeper). Any refusal shows
//! a page and stores nothing.

use super::flow::Refusal;
use super::state::{Flow, Session, FLOW_TTL, SESSION_TTL};
use super::{cookie, crypto, idtoken, pages, set_cookie, Site, SESSION_COOKIE, SIGNIN_COOKIE};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub async fn start(State(site): State<Arc<Site>>) -> Response {
    match begin(&site).await {
        Ok((location, state)) => {
            let value = site.signer.sign("signin", &state);
            redirect(&location, &[set_cookie(SIGNIN_COOKIE, &value, FLOW_TTL)])
        }
        Err(r) => pages::refused(&site, r),
    }
}

async fn begin(site: &Site) -> Result<(String, String), Refusal> {
    let endpoints = site.provider.endpoints().await?;
    let random = || crypto::random_token().map_err(|e| Refusal::Unavailable(e.to_string()));
    let (state, nonce, verifier) = (random()?, random()?, random()?);
    let challenge = crypto::pkce_challenge(&verifier);
    let location =
        site.provider
            .authorize_url(&endpoints.authorization, &state, &nonce, &challenge)?;
    site.flows.insert(state.clone(), Flow { nonce, verifier });
    Ok((location, state))
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn callback(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    match finish(&site, &headers, q).await {
        Ok(session_id) => {
            let value = site.signer.sign("session", &session_id);
            redirect(
                "/",
                &[
                    set_cookie(SESSION_COOKIE, &value, SESSION_TTL),
                    set_cookie(SIGNIN_COOKIE, "", Duration::ZERO),
                ],
            )
        }
        Err(r) => pages::refused(&site, r),
    }
}

async fn finish(site: &Site, headers: &HeaderMap, q: Callback) -> Result<String, Refusal> {
    let state = q.state.as_deref().unwrap_or("");
    let ours = cookie(headers, SIGNIN_COOKIE)
        .and_then(|c| site.signer.open("signin", c))
        .ok_or(Refusal::State)?;
    let same = aws_lc_rs::constant_time::verify_slices_are_equal(ours.as_bytes(), state.as_bytes());
    if state.is_empty() || same.is_err() {
        return Err(Refusal::State);
    }
    let flow = site.flows.take(state).ok_or(Refusal::State)?;
    if let Some(error) = q.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(Refusal::Provider(error));
    }
    let code = q.code.ok_or_else(|| Refusal::Provider("no code".into()))?;
    let tokens = site.provider.exchange(&code, &flow.verifier).await?;
    let id_token = tokens
        .id_token
        .ok_or(Refusal::IdToken("the provider sent no ID token"))?;
    let endpoints = site.provider.endpoints().await?;
    let expect = idtoken::Expect {
        issuer: &site.provider.issuer,
        client_id: &site.provider.client_id,
        nonce: &flow.nonce,
        skew_secs: site.provider.skew_secs,
    };
    let mut claims = idtoken::verify(id_token.expose(), &endpoints.jwks, &expect, now()).await?;
    if session_of(site, &claims).is_err() {
        if let Some(access) = &tokens.access_token {
            merge_userinfo(&mut claims, site.provider.userinfo(access).await?)?;
        }
    }
    let session = session_of(site, &claims)?;
    site.store
        .signed_in(sign_in(site, &session.user, tokens.refresh_token, now()))
        .await
        .map_err(|e| Refusal::Store(e.to_string()))?;
    let id = crypto::random_token().map_err(|e| Refusal::Unavailable(e.to_string()))?;
    tracing::info!(user = %session.user, "web: signed in");
    site.sessions.insert(id.clone(), session);
    Ok(id)
}

/// What the store keeps of a sign-in at `now`: with a refresh token the
/// provider is asked every `standing-check` and the app passwords work
/// `unreachable-grace` past each confirmation; without one they lapse
/// `max-age` after this sign-in.
pub fn sign_in<'a>(
    site: &'a Site,
    user: &'a str,
    refresh: Option<crate::secret::Secret>,
    now: i64,
) -> crate::apppass::SignIn<'a> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let settings = &site.app_passwords;
    let lifetime = match refresh {
        Some(_) => settings.unreachable_grace,
        None => settings.max_age,
    };
    crate::apppass::SignIn {
        directory: &site.directory,
        user,
        refresh,
        valid_until: now + secs(lifetime),
        next_check: now + secs(settings.standing_check),
    }
}

/// Adds the UserInfo claims the ID token lacks; the UserInfo `sub` must be
/// the ID token's (OIDC Core §5.3.2), or the answer is someone else's.
pub fn merge_userinfo(
    claims: &mut serde_json::Map<String, serde_json::Value>,
    userinfo: serde_json::Map<String, serde_json::Value>,
) -> Result<(), Refusal> {
    if claims.get("sub").is_none() || userinfo.get("sub") != claims.get("sub") {
        return Err(Refusal::Claims("userinfo names another subject".into()));
    }
    for (k, v) in userinfo {
        claims.entry(k).or_insert(v);
    }
    Ok(())
}

/// The ID token's claims → the signed-in user, through `fields.*`.
pub fn session_of(
    site: &Site,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<Session, Refusal> {
    let identity = crate::idp::claims::map(claims, &site.fields, site.identity)
        .map_err(|e| Refusal::Claims(e.reason()))?;
    let user = identity
        .get(site.identity)
        .ok_or_else(|| Refusal::Claims("no user field".into()))?;
    let user = site.case.apply(user).map_err(Refusal::Claims)?;
    Ok(Session {
        user,
        email: identity.email.clone(),
        name: identity.full_name.clone(),
    })
}

#[derive(Deserialize)]
pub struct Csrf {
    csrf: Option<String>,
}

pub async fn signout(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    let Some((id, _)) = pages::signed_in(&site, &headers) else {
        return redirect("/", &[]);
    };
    if !pages::csrf_ok(&site, &id, form.csrf.as_deref()) {
        return pages::refused(&site, Refusal::Csrf);
    }
    site.sessions.remove(&id);
    redirect("/", &[set_cookie(SESSION_COOKIE, "", Duration::ZERO)])
}

/// A 303 to `location`, setting `cookies`.
pub fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    for c in cookies {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
