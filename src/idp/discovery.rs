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
}

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
        self.document
            .get_or_try_init(|| async {
                let (doc, _) = http::get_json(client, &self.url, stats).await?;
                parse(&self.issuer, &doc)
            })
            .await
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
