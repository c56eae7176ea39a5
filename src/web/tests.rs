//! The site in-process: configuration, ID token checks (signature against a
//! key set, then each claim), and the pages over a real socket on
//! 127.0.0.1:0 (plain HTTP here; TLS is the listener's, tested end to end):
//! CSRF, `state`, refusals that store nothing.

use super::flow::Refusal;
use super::idtoken::{check_claims, verify_with, Expect};
use super::state::Session;
use super::*;
use crate::apppass::Store;
use crate::idp::jwks::KeySet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

pub const CONFIG: &str = r#"
[server]
hostname = "mail.example.com"
tls.cert = "/nonexistent/cert.pem"
tls.key = "/nonexistent/key.pem"

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:993"
tls = "implicit"
directory = "idp"
upstream = "dovecot"
public-name = "imap.example.com"

[listener.submissions]
protocol = "smtp"
bind = "127.0.0.1:465"
tls = "implicit"
directory = "idp"
upstream = "postfix"

[listener.submission]
protocol = "smtp"
bind = "127.0.0.1:587"
tls = "starttls"
directory = "idp"
upstream = "postfix"

[listener.account]
protocol = "https"
bind = "127.0.0.1:8443"
directory = "idp"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
identity = "email"

[upstream.postfix]
address = "127.0.0.1:10587"
login.method = "xclient"

[directory.idp]
type = "oidc"
issuer = "http://127.0.0.1:9"
required-scope = "email"
client.id = "mail-site"
client.secret = "site-secret"
app-passwords.standing-check = "5m"
"#;

fn config(text: &str) -> Result<Config, String> {
    Config::parse(text).map_err(|e| e.to_string())
}

#[test]
fn a_site_without_a_configured_store_key_is_warned_about() {
    let warned = |c: &Config| {
        c.warnings()
            .iter()
            .any(|w| w.contains("`store.hash-key` is not set"))
    };
    assert!(warned(&config(CONFIG).expect("config")));
    let keyed = format!("{CONFIG}\n[store]\nhash-key = \"{}\"\n", "k".repeat(32));
    assert!(!warned(&config(&keyed).expect("config")));
}

#[test]
fn an_https_listener_is_parsed_and_checked() {
    let c = config(CONFIG).expect("config");
    assert_eq!(c.web.len(), 1);
    assert_eq!(c.listeners.len(), 3, "the site is not a mail listener");
    let d = &c.directories["idp"];
    assert_eq!(d.client.as_ref().map(|c| c.id.as_str()), Some("mail-site"));
    assert_eq!(d.app_passwords.standing_check.as_secs(), 300);
    assert_eq!(
        redirect_uri(&c.web[0], "mail.example.com"),
        "https://mail.example.com:8443/oidc/callback"
    );
    let with_url = CONFIG.replace(
        "directory = \"idp\"\n\n[upstream.dovecot]",
        "directory = \"idp\"\npublic-url = \"https://account.example.com/\"\n\n[upstream.dovecot]",
    );
    let c = config(&with_url).expect("config");
    assert_eq!(
        redirect_uri(&c.web[0], "x"),
        "https://account.example.com/oidc/callback"
    );
    for (from, to, key) in [
        (
            "https://account.example.com/",
            "https://account.example.com",
            "public-url",
        ),
        (
            "client.id = \"mail-site\"\nclient.secret = \"site-secret\"\n",
            "",
            "client.id",
        ),
    ] {
        let e = config(&with_url.replace(from, to)).expect_err("refused");
        assert!(e.contains(key), "{e}");
    }
    let e = config(&CONFIG.replace(
        "bind = \"127.0.0.1:8443\"",
        "bind = \"127.0.0.1:8443\"\nupstream = \"dovecot\"",
    ))
    .expect_err("an https listener has no upstream");
    assert!(e.contains("listener.account.upstream"), "{e}");
    let e = config(&CONFIG.replace(
        "bind = \"127.0.0.1:8443\"",
        "bind = \"127.0.0.1:8443\"\ncookie-key = \"short\"",
    ))
    .expect_err("short key");
    assert!(e.contains("cookie-key"), "{e}");
}

fn expect() -> Expect<'static> {
    Expect {
        issuer: "https://idp.example",
        client_id: "mail-site",
        nonce: "n-0S6_WzA2Mj",
        skew_secs: 60,
    }
}

fn good_claims() -> Map<String, Value> {
    json!({"iss": "https://idp.example/", "aud": "mail-site", "exp": 2000, "iat": 1000,
        "nonce": "n-0S6_WzA2Mj", "sub": "alice", "email": "alice@example.com"})
    .as_object()
    .cloned()
    .unwrap_or_default()
}

#[test]
fn id_token_claims_are_checked() {
    assert!(check_claims(&good_claims(), &expect(), 1500).is_ok());
    let refused = |k: &str, v: Value, now: i64| {
        let mut c = good_claims();
        c.insert(k.into(), v);
        match check_claims(&c, &expect(), now) {
            Err(Refusal::IdToken(why)) => why,
            other => panic!("{k}: {other:?}"),
        }
    };
    assert!(refused("iss", json!("https://evil.example"), 1500).contains("issuer"));
    assert!(refused("aud", json!("other-client"), 1500).contains("aud"));
    assert!(refused("aud", json!(["mail-site", "x"]), 1500).contains("azp"));
    assert!(refused("azp", json!("other-client"), 1500).contains("azp"));
    assert!(refused("exp", json!(1000), 1500).contains("expired"));
    assert!(refused("nonce", json!("replayed"), 1500).contains("nonce"));
    assert!(refused("nonce", json!(""), 1500).contains("nonce"));
    assert!(refused("iat", json!(9000), 1500).contains("future"));
    let mut none = good_claims();
    none.remove("nonce");
    assert!(check_claims(&none, &expect(), 1500).is_err());
}

/// An Ed25519 key made by openssl: (PKCS#8 PEM, the public JWK's `x`).
pub(super) fn ed25519() -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .status()
            .expect("openssl");
        assert!(ok.success());
    };
    run(&["genpkey", "-algorithm", "ED25519", "-out", "k.pem"]);
    run(&[
        "pkey", "-in", "k.pem", "-pubout", "-outform", "DER", "-out", "k.der",
    ]);
    let der = std::fs::read(dir.path().join("k.der")).expect("der");
    let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
    (std::fs::read(dir.path().join("k.pem")).expect("pem"), x)
}

#[test]
fn id_token_signature_is_checked_against_the_key_set() {
    let (pem, x) = ed25519();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&header, &good_claims(), &key).expect("sign");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]});
    let set = KeySet::parse(jwks.as_object().expect("object"));
    assert!(verify_with(&token, &set, &expect(), 1500).is_ok());
    let (_, other) = ed25519();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": other, "kid": "k1"}]});
    let wrong = KeySet::parse(jwks.as_object().expect("object"));
    assert!(matches!(
        verify_with(&token, &wrong, &expect(), 1500),
        Err(Refusal::IdToken("bad signature"))
    ));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good_claims(),
        &jsonwebtoken::EncodingKey::from_secret(b"site-secret-site-secret-site-sec"),
    )
    .expect("sign");
    assert!(verify_with(&hs, &set, &expect(), 1500).is_err());
    let expired = verify_with(&token, &set, &expect(), 5000);
    assert!(matches!(expired, Err(Refusal::IdToken("expired"))));
}

#[test]
fn cookies_are_read_by_name() {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        "a=1; __Host-session=abc.def; b=2".parse().expect("header"),
    );
    assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc.def"));
    assert_eq!(cookie(&h, SIGNIN_COOKIE), None);
    let c = set_cookie(SESSION_COOKIE, "v", std::time::Duration::from_secs(60));
    for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=60"] {
        assert!(c.contains(part), "{c}");
    }
}

#[test]
fn dates_and_groups() {
    assert_eq!(pages::date(0), "1970-01-01 00:00 UTC");
    assert_eq!(pages::date(1_764_633_600 + 3661), "2025-12-02 01:01 UTC");
    assert_eq!(pages::grouped("abcdefghij"), "abcd efgh ij");
    assert_eq!(pages::grouped("abcd-efgh-ij"), "abcd efgh ij");
    let every = |s| pages::every(std::time::Duration::from_secs(s));
    assert_eq!(
        [every(900), every(3600), every(7200), every(10), every(90)],
        [
            "15 minutes",
            "1 hour",
            "2 hours",
            "10 seconds",
            "90 seconds"
        ]
    );
}

/// A real SQLite store in a temporary directory: what the site's tests
/// create app passwords in and read refresh tokens back from.
pub struct TempStore {
    pub store: Arc<crate::apppass::sqlite::SqliteStore>,
    _dir: tempfile::TempDir,
}

impl TempStore {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = crate::config::StoreSettings::default();
        let store = crate::apppass::sqlite::SqliteStore::open(&dir.path().join("s.db"), &settings)
            .await
            .expect("store");
        Self {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    /// Whether `password` is one of `user`'s app passwords.
    pub async fn check(&self, user: &str, password: &str) -> bool {
        let found = self
            .store
            .verify(password.as_bytes())
            .await
            .expect("verify");
        found.is_some_and(|v| v.password.user == user)
    }

    /// The refresh token kept for `user` (directory `idp`), left due.
    pub async fn refresh_token(&self, user: &str) -> Option<String> {
        let due = self.store.due("idp", i64::MAX / 4, 0).await.expect("due");
        due.into_iter()
            .find(|d| d.user == user)
            .map(|d| d.refresh.expose().to_string())
    }
}

#[path = "pages_tests.rs"]
mod pages_tests;

#[path = "flow_tests.rs"]
mod flow_tests;
