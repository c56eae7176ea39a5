//! Tests of `idp`.
use super::*;
use crate::config::Config;

pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef";

pub(super) fn directories(blocks: &str, names: &[&str]) -> Directories {
    let text = format!(
        "[listener.l]\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ndirectory = \"{}\"\nupstream = \"u\"\n\
         [upstream.u]\naddress = \"127.0.0.1:1\"\nlogin.method = \"master-user\"\nlogin.username = \"p\"\nlogin.secret = \"s\"\n{blocks}",
        names[0]
    );
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    Directories::new(
        names
            .iter()
            .map(|n| Arc::new(Validator::new(config.directories[*n].clone()).unwrap()))
            .collect(),
    )
}

pub(super) fn jwt_block(name: &str, issuer: &str) -> String {
    format!(
        "[directory.{name}]\ntype = \"oidc\"\nendpoint.method = \"jwt\"\nissuer = \"{issuer}\"\naudience = \"urn:mail\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nfields.username = \"username\"\n"
    )
}

pub(super) fn token(iss: &str) -> Secret {
    let claims = serde_json::json!({"iss": iss, "aud": "urn:mail", "exp": cache::unix_now() + 60, "username": "alice"});
    let header = jsonwebtoken::Header {
        typ: Some("at+jwt".into()),
        ..Default::default()
    };
    Secret::new(
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn a_jwt_goes_to_the_directory_of_its_issuer() {
    let blocks = format!(
        "{}{}",
        jwt_block("a", "https://a.example"),
        jwt_block("b", "https://b.example/")
    );
    let dirs = directories(&blocks, &["a", "b"]);
    let (name, r) = dirs
        .validate(&token("https://b.example"), IdentityField::Username)
        .await;
    assert_eq!(dirs.name(name), "b");
    assert_eq!(r.unwrap().username.as_deref(), Some("alice"));
    assert_eq!(
        dirs.list[0].stats().snapshot().misses,
        0,
        "`a` never saw it"
    );
    // An issuer nobody has: every directory refuses it.
    let (_, r) = dirs
        .validate(&token("https://c.example"), IdentityField::Username)
        .await;
    assert!(matches!(r, Err(Error::Rejected(_))));
}

#[tokio::test]
async fn an_unreachable_directory_makes_a_temporary_failure_not_a_refusal() {
    let blocks = format!(
        "{}[directory.down]\ntype = \"oidc\"\ntimeout = \"2s\"\nendpoint.url = \"http://127.0.0.1:1/userinfo\"\nrequired-scope = \"email\"\n",
        jwt_block("a", "https://a.example")
    );
    let dirs = directories(&blocks, &["a", "down"]);
    let (name, r) = dirs
        .validate(&Secret::new("opaque"), IdentityField::Username)
        .await;
    assert_eq!(dirs.name(name), "down");
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    // A JWT of `a` still logs in: routed by its issuer.
    let (name, r) = dirs
        .validate(&token("https://a.example"), IdentityField::Username)
        .await;
    assert_eq!((dirs.name(name), r.is_ok()), ("a", true));
    let s = dirs.list[1].stats().snapshot();
    assert_eq!((s.provider_requests, s.provider_errors), (1, 1));
}
