//! OIDC UserInfo (OpenID Connect Core §5.3): GET with the token as bearer.
//! 200 with a JSON object gives the claims; the token is the credential,
//! so what any other answer means is [`answer::judged_by_token`].

use super::answer::Credential;
use super::{http, Error, Rejection};
use crate::secret::Secret;
use serde_json::{Map, Value};

pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: &Secret,
) -> Result<Map<String, Value>, Error> {
    sendable(token)?;
    let response = http::send(
        client
            .get(url)
            .bearer_auth(token.expose())
            .header("accept", "application/json"),
    )
    .await?;
    http::claims(response, Credential::Token, "userinfo").await
}

/// A token that cannot travel in an `Authorization` header (a password
/// taken as a token may hold anything) is not one the provider issued:
/// refused here, rather than failing to build the request, which would
/// look like an unreachable provider.
pub fn sendable(token: &Secret) -> Result<(), Error> {
    let printable = token.expose().bytes().all(|b| (0x21..0x7f).contains(&b));
    if printable && !token.expose().is_empty() {
        return Ok(());
    }
    Err(Error::Rejected(Rejection::InvalidToken(
        "the token cannot be sent as a bearer credential".into(),
    )))
}
