//! The one HTTP listener (`[server.http] bind`): `/metrics` (Prometheus),
//! `/healthz`, and `POST /backchannel-logout/<directory>` (OpenID Connect
//! Back-Channel Logout 1.0). Routing by axum, HTTP/1.1 by hyper.
//!
//! - this file: the routes and the state they share;
//! - [`server`]: accepting connections with bounded numbers, sizes and times;
//! - [`logout`]: the back-channel logout endpoint.

mod logout;
mod server;

pub use server::{
    accept, bind, connection, serve, Limits, HEADER_TIMEOUT, MAX_BODY, MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
};

use crate::idp::Validator;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// What the handlers share: the running directories, replaced at each
/// reload (a logout reaches the validator that serves logins now).
#[derive(Default)]
pub struct Shared {
    directories: RwLock<BTreeMap<String, Arc<Validator>>>,
}

impl Shared {
    pub fn set_directories(&self, directories: BTreeMap<String, Arc<Validator>>) {
        match self.directories.write() {
            Ok(mut d) => *d = directories,
            Err(e) => *e.into_inner() = directories,
        }
    }

    fn directory(&self, name: &str) -> Option<Arc<Validator>> {
        let d = self.directories.read().unwrap_or_else(|e| e.into_inner());
        d.get(name).cloned()
    }
}

/// Every route of the listener.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics).fallback(get_only))
        .route("/healthz", get(healthz).fallback(get_only))
        .route(
            "/backchannel-logout/{directory}",
            post(logout::receive).fallback(post_only),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
}

async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], "ok\n")
}

fn plain(status: StatusCode, text: &'static str) -> axum::response::Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

async fn not_found() -> axum::response::Response {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

async fn get_only() -> axum::response::Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")
}

async fn post_only() -> axum::response::Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "POST only\n")
}

#[cfg(test)]
mod tests;
