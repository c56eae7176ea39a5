//! Asking the provider about a token again for an open session (session
//! re-validation), past the cache; and forgetting a user after a logout.

use super::{cache, introspect, Endpoint, Error, Method, Validator};
use crate::secret::Secret;

impl Validator {
    /// Asks the provider about `token` again, past the cache (session
    /// re-validation). A refusal is remembered in the cache, so the next
    /// login with the token is refused too.
    pub async fn recheck(&self, token: &Secret) -> Result<(), Error> {
        let checked = match self.check(token).await {
            Ok(_) => self.introspect_jwt(token).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(_) => Ok(()),
            Err(Error::Rejected(r)) => {
                if let Some(cache) = &self.cache {
                    cache.refuse(cache::key(token.expose()), r.clone()).await;
                }
                Err(Error::Rejected(r))
            }
            Err(e) => Err(e),
        }
    }

    /// A JWT directory with introspection credentials (`auth.*`): asks the
    /// issuer's introspection endpoint too, which knows about revocation.
    async fn introspect_jwt(&self, token: &Secret) -> Result<(), Error> {
        let Method::Jwt(_) = &self.method else {
            return Ok(());
        };
        let Endpoint::Jwt(settings) = &self.directory.endpoint else {
            return Ok(());
        };
        let Some(auth) = &settings.introspect else {
            return Ok(());
        };
        let url = self.endpoint(None, |d| &d.introspection_endpoint).await?;
        let claims = self
            .timed(introspect::fetch(&self.http, &url, auth, token))
            .await?;
        introspect::check(&claims, cache::unix_now(), &self.introspect_expect())
    }

    /// Drops the cached validations of `sub` (after a back-channel logout).
    pub fn forget_subject(&self, sub: &str) {
        if let Some(cache) = &self.cache {
            cache.forget_subject(sub);
        }
    }
}
