//! `POST /backchannel-logout/<directory>`: OpenID Connect Back-Channel
//! Logout 1.0 §2.5 to §2.8. The provider posts a `logout_token` (form
//! encoded); a valid one ends the sessions of its `sub` / `sid` in that
//! directory (their relays send the protocol's farewell at once) and drops
//! the user's cached token results, so the next login asks the provider.
//! Answers: 200 (empty, `Cache-Control: no-store`), 400 with a JSON
//! `invalid_request` naming the problem (never quoting the token), 404 for
//! a directory without back-channel logout, 503 when the provider's keys
//! cannot be fetched (the token may be good: the provider may retry).

use super::Shared;
use crate::idp::logout::{Error, Logout};
use crate::idp::Validator;
use crate::sessions::{Reason, Registry, Selector};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(super) struct LogoutForm {
    logout_token: Option<String>,
}

/// Every answer of the endpoint; [`Reply::into_response`] is the one
/// place that turns them into HTTP.
enum Reply {
    Done,
    NotFound,
    Invalid(&'static str),
    TooLarge,
    Unavailable,
}

pub(super) async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(directory): Path<String>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let Some(validator) = shared
        .directory(&directory)
        .filter(|v| v.logout().is_some())
    else {
        return Reply::NotFound.into_response();
    };
    let token = match form {
        Ok(Form(LogoutForm {
            logout_token: Some(t),
        })) => t,
        Ok(_) => return Reply::Invalid("logout_token missing").into_response(),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Reply::TooLarge.into_response()
        }
        Err(_) => {
            return Reply::Invalid(
                "the body must be application/x-www-form-urlencoded with logout_token",
            )
            .into_response()
        }
    };
    logout(&validator, &token).await.into_response()
}

async fn logout(validator: &Validator, token: &str) -> Reply {
    let Some(verifier) = validator.logout() else {
        return Reply::NotFound;
    };
    match verifier.verify(token, crate::idp::cache::unix_now()).await {
        Ok(logout) => {
            end_sessions(validator, &logout);
            Reply::Done
        }
        Err(Error::Refused(why)) => {
            tracing::warn!(directory = %validator.name(), "back-channel logout refused: {why}");
            Reply::Invalid(why)
        }
        Err(e @ Error::Unavailable(_)) => {
            tracing::warn!(directory = %validator.name(), "back-channel logout not checked: {e}");
            Reply::Unavailable
        }
    }
}

/// Ends the sessions the logout names and forgets the user's cached
/// token results (for a `sid`-only logout: the users of those sessions).
fn end_sessions(validator: &Validator, logout: &Logout) {
    let registry = Registry::shared();
    let selector = Selector::Logout {
        directory: validator.name().to_string(),
        sub: logout.sub.clone(),
        sid: logout.sid.clone(),
    };
    let subjects: BTreeSet<String> = logout
        .sub
        .iter()
        .cloned()
        .chain(registry.list(&selector).into_iter().filter_map(|i| i.sub))
        .collect();
    let ended = registry.end(&selector, Reason::Logout);
    for sub in &subjects {
        validator.forget_subject(sub);
    }
    tracing::info!(
        directory = %validator.name(),
        sub = logout.sub.as_deref().unwrap_or("-"),
        sid = logout.sid.as_deref().unwrap_or("-"),
        sessions = ended,
        "back-channel logout"
    );
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let error = |status: StatusCode, code: &str, description: &str| {
            let body = serde_json::json!({ "error": code, "error_description": description });
            let headers = [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ];
            (status, headers, body.to_string()).into_response()
        };
        match self {
            Reply::Done => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
            Reply::NotFound => super::plain(StatusCode::NOT_FOUND, "not found\n"),
            Reply::Invalid(why) => error(StatusCode::BAD_REQUEST, "invalid_request", why),
            Reply::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large",
            ),
            Reply::Unavailable => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the provider's signing keys cannot be fetched now",
            ),
        }
    }
}
