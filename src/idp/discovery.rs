//! OpenID Connect Discovery 1.0: `<issuer>/.well-known/openid-configuration`
//! gives the JWKS, UserInfo and introspection endpoints. Fetched on first
//! need and kept; a failed fetch is retried by the next login.

use super::{http, Error, Stats};
use serde_json::Value;
use tokio::sync::OnceCell;

/// The parts of the discovery document this proxy uses.
#[derive(Debug, Clone)]
pub struct Document {
    pub jwks_uri: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
}

pub struct Discovery {
    issuer: String,
    url: String,
    document: OnceCell<Document>,
    /// When the last fetch failed, and why: for [`FAILURE_HOLD`] later
    /// logins fail at once instead of queueing behind slow attempts.
    failed: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

pub const FAILURE_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// The discovery URL of an issuer (OIDC Discovery §4).
pub fn url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl Discovery {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            url: url(issuer),
            document: OnceCell::new(),
            failed: std::sync::Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn document(
        &self,
        client: &reqwest::Client,
        stats: &Stats,
    ) -> Result<&Document, Error> {
        if let Some(doc) = self.document.get() {
            return Ok(doc);
        }
        if let Some(why) = self.recent_failure() {
            return Err(Error::Unavailable(why));
        }
        self.document
            .get_or_try_init(|| async {
                if let Some(why) = self.recent_failure() {
                    return Err(Error::Unavailable(why));
                }
                let result = match http::get_json(client, &self.url, stats).await {
                    Ok((doc, _)) => parse(&self.issuer, &doc),
                    Err(e) => Err(e),
                };
                if let Err(e) = &result {
                    let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                    *failed = Some((std::time::Instant::now(), e.reason()));
                }
                result
            })
            .await
    }

    fn recent_failure(&self) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FAILURE_HOLD)
            .map(|(_, why)| why.clone())
    }
}

/// Checks the document names the configured issuer (OIDC Discovery §4.3)
/// and takes the endpoints from it.
pub fn parse(issuer: &str, doc: &serde_json::Map<String, Value>) -> Result<Document, Error> {
    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(Error::Unavailable(format!(
            "discovery document names issuer {named:?}, not the configured {issuer:?}"
        )));
    }
    let url = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .map(str::to_string)
    };
    Ok(Document {
        jwks_uri: url("jwks_uri"),
        userinfo_endpoint: url("userinfo_endpoint"),
        introspection_endpoint: url("introspection_endpoint"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_failed_fetch_is_not_retried_by_every_login() {
        let d = Discovery::new("http://127.0.0.1:1");
        let client = reqwest::Client::new();
        let stats = Stats::default();
        assert!(d.document(&client, &stats).await.is_err());
        let e = d.document(&client, &stats).await.unwrap_err();
        assert!(
            !e.to_string().contains("unavailable: provider unavailable"),
            "{e}"
        );
        assert_eq!(stats.snapshot().provider_requests, 1);
        assert_eq!(stats.snapshot().provider_errors, 1);
    }

    #[test]
    fn issuer_must_match() {
        let doc = json!({"issuer": "https://idp.example/", "jwks_uri": "https://idp.example/jwks",
            "userinfo_endpoint": "javascript:alert(1)"});
        let d = parse("https://idp.example", doc.as_object().unwrap()).unwrap();
        assert_eq!(d.jwks_uri.as_deref(), Some("https://idp.example/jwks"));
        assert_eq!(d.userinfo_endpoint, None);
        assert!(parse("https://other.example", doc.as_object().unwrap()).is_err());
        assert_eq!(
            url("https://idp.example/realms/mail/"),
            "https://idp.example/realms/mail/.well-known/openid-configuration"
        );
    }
}
