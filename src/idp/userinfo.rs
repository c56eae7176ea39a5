//! OIDC UserInfo (OpenID Connect Core §5.3): GET with the token as bearer.
//! 200 with a JSON object gives the claims; 401/403 mean the token is bad.

use super::{http, Error, Rejection};
use crate::secret::Secret;
use serde_json::{Map, Value};

pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: &Secret,
) -> Result<Map<String, Value>, Error> {
    let response = http::send(
        client
            .get(url)
            .bearer_auth(token.expose())
            .header("accept", "application/json"),
    )
    .await?;
    let status = response.status();
    match status.as_u16() {
        200 => http::json_object(response).await,
        // 413 and 431: the token is too large to be one the provider issued.
        400 | 401 | 403 | 413 | 431 => Err(Error::Rejected(Rejection::InvalidToken(format!(
            "userinfo answered {status}"
        )))),
        _ => Err(Error::Unavailable(format!("userinfo answered {status}"))),
    }
}
