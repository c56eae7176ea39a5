//! The HTTP client for one provider: pooled, bounded in time and size.

use super::Error;
use crate::config::Directory;

/// Largest provider answer we read (a userinfo or introspection document).
pub const MAX_BODY: usize = 1024 * 1024;

pub fn client(directory: &Directory) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(directory.timeout)
        .connect_timeout(directory.timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
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

/// Sends the request; transport failures are `Unavailable`.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
    request.send().await.map_err(|e| {
        if e.is_timeout() {
            Error::Unavailable("provider timed out".into())
        } else {
            // reqwest's message names the URL, never the headers or body.
            Error::Unavailable(format!("provider unreachable: {}", e.without_url()))
        }
    })
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
