//! The HTTP client for one provider: pooled, bounded in time and size.

use super::Error;
use crate::config::Directory;

/// Largest provider answer we read (a userinfo or introspection document).
pub const MAX_BODY: usize = 1024 * 1024;
/// Idle keep-alive connections kept per provider host.
pub const POOL_MAX_IDLE: usize = 32;

pub fn client(directory: &Directory) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(directory.timeout)
        .connect_timeout(directory.timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        // Bounded: after a burst of logins at most this many idle
        // connections to the provider stay open.
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .user_agent(concat!("oauthbearer-proxy/", env!("CARGO_PKG_VERSION")))
        // A provider answers in place; following a redirect could hand the
        // token to another host.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &directory.tls_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Provider requests in flight at once, for the whole process: a login
/// storm queues here instead of opening thousands of connections to the
/// provider (whose accept queue then overflows and refuses everyone).
pub const MAX_IN_FLIGHT: usize = 256;
static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_IN_FLIGHT);

/// Sends the request; transport failures are `Unavailable`.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    // Each holder is done within the directory's timeout, so the wait is bounded.
    let _slot = IN_FLIGHT
        .acquire()
        .await
        .map_err(|_| Error::Unavailable("provider request queue closed".into()))?;
    // A pooled keep-alive connection the provider closed just as it was
    // reused (Node's default keep-alive is 5 s, ours 90 s) fails the
    // request without any answer: that one is tried again, once, on a
    // fresh connection. Provider requests are reads, safe to repeat.
    let again = request.try_clone();
    let first = request.send().await;
    let result = match (first, again) {
        (Err(e), Some(again)) if is_stale_connection(&e) => {
            tracing::debug!("provider connection closed under a request, retrying once: {e}");
            again.send().await
        }
        (r, _) => r,
    };
    result.map_err(|e| {
        if e.is_timeout() {
            Error::Unavailable("provider timed out".into())
        } else {
            // reqwest's message names the URL, never the headers or body.
            Error::Unavailable(format!("provider unreachable: {}", e.without_url()))
        }
    })
}

/// An error on a connection that existed (not a refused or timed-out
/// connect, not a timeout): what a stale keep-alive connection gives.
fn is_stale_connection(e: &reqwest::Error) -> bool {
    e.is_request() && !e.is_connect() && !e.is_timeout()
}

/// Reads a JSON object body of at most [`MAX_BODY`] bytes.
pub async fn json_object(
    mut response: reqwest::Response,
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    if response
        .content_length()
        .is_some_and(|l| l as usize > MAX_BODY)
    {
        return Err(Error::Unavailable("provider answer too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Unavailable(format!("reading provider answer: {}", e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::Unavailable("provider answer too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(Error::Unavailable(
            "provider answered something that is not a JSON object".into(),
        )),
    }
}

/// The claims of a 200 answer from the endpoint `what`; any other answer
/// is what [`super::answer::meaning`] says for `credential`, with the
/// RFC 6750 error code from `WWW-Authenticate` or else the JSON body's `error`.
pub async fn claims(
    response: reqwest::Response,
    credential: super::answer::Credential,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let status = response.status().as_u16();
    if status == 200 {
        return json_object(response).await;
    }
    let challenged = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(super::answer::challenge_error);
    let error = match challenged {
        Some(e) => Some(e),
        // An error body is read like an answer: bounded in size and time.
        None => json_object(response).await.ok().and_then(|body| {
            body.get("error")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        }),
    };
    Err(super::answer::meaning(
        credential,
        what,
        status,
        error.as_deref(),
    ))
}

/// GETs a JSON document (discovery, JWKS), counting the request. Returns
/// the object and the response's `Cache-Control: max-age`, if any.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    stats: &super::Stats,
) -> Result<(serde_json::Map<String, serde_json::Value>, Option<u64>), Error> {
    let started = std::time::Instant::now();
    let result = async {
        let response = send(client.get(url).header("accept", "application/json")).await?;
        let status = response.status();
        if status.as_u16() != 200 {
            return Err(Error::Unavailable(format!("{url} answered {status}")));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        Ok((json_object(response).await?, max_age))
    }
    .await;
    stats.provider_request(started.elapsed(), result.is_err());
    result
}

/// `max-age` from a Cache-Control header value (`no-store`/`no-cache` mean 0).
pub fn max_age(value: &str) -> Option<u64> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse().ok();
        }
    }
    age
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_control() {
        assert_eq!(super::max_age("public, max-age=300"), Some(300));
        assert_eq!(super::max_age("max-age=\"60\""), Some(60));
        assert_eq!(super::max_age("no-store"), Some(0));
        assert_eq!(super::max_age("public"), None);
        assert_eq!(super::max_age("max-age=lots"), None);
    }
}
