//! The whole sign-in against an in-process provider whose token endpoint
//! answers what each case needs: a good ID token signs in and keeps the
//! refresh token; a wrong `nonce`, another `aud` or `iss`, an expired token,
//! claims that name no mailbox and a refused (replayed) code each end on
//! the refusal page with no session and nothing kept.

use super::*;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};

fn json_of(status: u16, v: Value) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}
use std::sync::Mutex;

/// What the fake token endpoint answers next.
#[derive(Default)]
struct Answer {
    id_token: Option<String>,
    refuse: bool,
    /// Issue no refresh token (as providers without `offline_access` do).
    no_refresh: bool,
    /// Refuse the client's own credentials (a rotated client secret).
    invalid_client: bool,
    /// Answer after this long; count the requests in flight meanwhile.
    delay_ms: u64,
    in_flight: usize,
    most_in_flight: usize,
}

type Shared = Arc<(String, Mutex<Answer>, Value)>;

async fn discovery(AxState(s): AxState<Shared>) -> Response {
    let b = &s.0;
    json_of(
        200,
        json!({"issuer": b, "authorization_endpoint": format!("{b}/auth"),
        "token_endpoint": format!("{b}/token"), "jwks_uri": format!("{b}/jwks"),
        "userinfo_endpoint": format!("{b}/me")}),
    )
}

async fn jwks(AxState(s): AxState<Shared>) -> Response {
    json_of(200, s.2.clone())
}

async fn userinfo() -> Response {
    json_of(200, json!({"sub": "alice", "name": "Alice"}))
}

async fn token(AxState(s): AxState<Shared>) -> Response {
    let delay = {
        let mut answer = s.1.lock().unwrap_or_else(|e| e.into_inner());
        answer.in_flight += 1;
        answer.most_in_flight = answer.most_in_flight.max(answer.in_flight);
        answer.delay_ms
    };
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    let mut answer = s.1.lock().unwrap_or_else(|e| e.into_inner());
    answer.in_flight -= 1;
    if answer.invalid_client {
        return json_of(401, json!({"error": "invalid_client"}));
    }
    if answer.refuse {
        return json_of(400, json!({"error": "invalid_grant"}));
    }
    let mut body = json!({"access_token": "at", "token_type": "Bearer",
        "refresh_token": "rt-alice", "id_token": answer.id_token});
    if answer.no_refresh {
        body.as_object_mut().map(|o| o.remove("refresh_token"));
    }
    json_of(200, body)
}

struct Fixture {
    site_url: String,
    issuer: String,
    provider: Shared,
    store: TempStore,
    key: jsonwebtoken::EncodingKey,
    http: reqwest::Client,
}

async fn serve_plain(router: axum::Router) -> String {
    let socket = crate::http::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(crate::http::serve(socket, router));
    format!("http://127.0.0.1:{port}")
}

async fn fixture() -> Fixture {
    let (pem, x) = ed25519();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    drop(listener);
    let keys = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]});
    let shared: Shared = Arc::new((issuer.clone(), Mutex::new(Answer::default()), keys));
    let provider_router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
        .route("/jwks", axum::routing::get(jwks))
        .route("/me", axum::routing::get(userinfo))
        .route("/token", axum::routing::post(token))
        .with_state(shared.clone());
    let addr: std::net::SocketAddr = issuer["http://".len()..].parse().expect("addr");
    let socket = crate::http::bind(addr).await.expect("bind the provider");
    tokio::spawn(crate::http::serve(socket, provider_router));
    let c = config(&CONFIG.replace("http://127.0.0.1:9", &issuer)).expect("config");
    let store = TempStore::new().await;
    let site = Site::new(&c, &c.web[0], store.store.clone()).expect("site");
    Fixture {
        site_url: serve_plain(router(Arc::new(site))).await,
        issuer,
        provider: shared,
        store,
        key: jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("key"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    }
}

impl Fixture {
    /// `/signin`: the signin cookie and the nonce sent to the provider.
    async fn begin(&self) -> (String, String, String) {
        let r = self
            .http
            .get(format!("{}/signin", self.site_url))
            .send()
            .await
            .expect("signin");
        assert_eq!(r.status().as_u16(), 303);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .to_string();
        assert!(
            cookie.contains("Secure; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        let url = url::Url::parse(&location).expect("url");
        let q = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        assert_eq!(q("code_challenge_method"), "S256");
        assert!(q("scope").contains("offline_access"));
        assert_eq!(
            q("redirect_uri"),
            "https://mail.example.com:8443/oidc/callback"
        );
        let cookie = cookie.split(';').next().unwrap_or("").to_string();
        (cookie, q("state"), q("nonce"))
    }

    fn id_token(&self, claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    /// Signs in with the ID token `edit` makes of good claims: the status,
    /// the session cookie if any, and the page.
    async fn sign_in(&self, edit: impl Fn(&mut Map<String, Value>)) -> (u16, bool, String) {
        let (cookie, state, nonce) = self.begin().await;
        let now = signin::now();
        let mut claims = json!({"iss": self.issuer, "aud": "mail-site", "exp": now + 300,
            "iat": now, "nonce": nonce, "sub": "alice", "email": "alice@example.com"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        edit(&mut claims);
        self.provider.1.lock().expect("lock").id_token = Some(self.id_token(Value::Object(claims)));
        let r = self
            .http
            .get(format!(
                "{}/oidc/callback?code=c&state={state}",
                self.site_url
            ))
            .header("cookie", cookie)
            .send()
            .await
            .expect("callback");
        let status = r.status().as_u16();
        let session = r.headers().get_all("set-cookie").iter().any(|c| {
            c.to_str().unwrap_or("").starts_with("__Host-session=")
                && !c.to_str().unwrap_or("").contains("Max-Age=0")
        });
        (status, session, r.text().await.unwrap_or_default())
    }
}

/// A change to good ID token claims.
type Edit = Box<dyn Fn(&mut Map<String, Value>)>;

#[tokio::test]
async fn the_id_token_decides_and_a_refusal_keeps_nothing() {
    let f = fixture().await;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "wrong nonce",
            Box::new(|c| {
                c.insert("nonce".into(), json!("other"));
            }),
            "could not be verified",
        ),
        (
            "other aud",
            Box::new(|c| {
                c.insert("aud".into(), json!("other-app"));
            }),
            "could not be verified",
        ),
        (
            "other iss",
            Box::new(|c| {
                c.insert("iss".into(), json!("http://evil.example"));
            }),
            "could not be verified",
        ),
        (
            "expired",
            Box::new(|c| {
                c.insert("exp".into(), json!(signin::now() - 3600));
            }),
            "could not be verified",
        ),
        (
            "no mailbox",
            Box::new(|c| {
                c.remove("email");
            }),
            "does not name a mailbox",
        ),
    ];
    for (name, edit, text) in cases {
        let (status, session, page) = f.sign_in(edit).await;
        assert_eq!(status, 400, "{name}: {page}");
        assert!(!session, "{name}: no session");
        assert!(page.contains(text), "{name}: {page}");
        assert_eq!(
            f.store.refresh_token("alice@example.com").await,
            None,
            "{name}"
        );
    }
    f.provider.1.lock().expect("lock").refuse = true;
    let (status, session, page) = f.sign_in(|_| {}).await;
    assert_eq!((status, session), (400, false), "a replayed code: {page}");
    assert!(page.contains("refused the sign-in"), "{page}");
    f.provider.1.lock().expect("lock").refuse = false;
    let (status, session, page) = f.sign_in(|_| {}).await;
    assert_eq!((status, session), (303, true), "{page}");
    assert_eq!(
        f.store.refresh_token("alice@example.com").await.as_deref(),
        Some("rt-alice")
    );
}

#[tokio::test]
async fn the_standing_check_disables_on_refusal_and_keeps_when_unreachable() {
    use super::standing::{check_due, Check, Disabled};
    let f = fixture().await;
    let c = config(&CONFIG.replace("http://127.0.0.1:9", &f.issuer)).expect("config");
    let provider = |c: &crate::config::Config| {
        let p = flow::Provider::new(&c.directories["idp"], "https://x/oidc/callback".into());
        Arc::new(p.expect("provider").expect("a client"))
    };
    let store = TempStore::new().await;
    let alice = "alice@example.com";
    let (_, secret) = store.store.create(alice, "Phone").await.expect("create");
    let sign_in = crate::apppass::SignIn {
        directory: "idp",
        user: alice,
        refresh: Some(crate::secret::Secret::new("rt-old")),
        valid_until: 1_000,
        next_check: 100,
    };
    store.store.signed_in(sign_in).await.expect("signed in");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = seen.clone();
    let disabled: Disabled = Arc::new(move |user: &str| {
        noted.lock().expect("lock").push(user.to_string());
    });
    let check = |provider| Check {
        provider,
        store: store.store.clone(),
        directory: "idp".into(),
        settings: c.directories["idp"].app_passwords.clone(),
        disabled: disabled.clone(),
    };
    let grace = c.directories["idp"]
        .app_passwords
        .unreachable_grace
        .as_secs() as i64;
    let interval = c.directories["idp"].app_passwords.standing_check.as_secs() as i64;
    let live = check(provider(&c));
    assert_eq!(
        check_due(&live, 99).await,
        Default::default(),
        "not due yet"
    );
    let round = check_due(&live, 100).await;
    assert_eq!((round.active, round.unreachable), (1, 0));
    let found = store
        .store
        .verify(secret.expose().as_bytes())
        .await
        .expect("verify");
    assert_eq!(found.expect("found").valid_until, Some(100 + grace));
    assert_eq!(
        check_due(&live, 101).await,
        Default::default(),
        "once per interval"
    );
    // A provider that cannot be reached (nothing listens on port 9)
    // changes nothing: the rotated token stays, the validity runs on.
    let unreachable = check(provider(&config(CONFIG).expect("config")));
    let round = check_due(&unreachable, 100 + interval).await;
    assert_eq!((round.active, round.unreachable), (0, 1));
    assert!(seen.lock().expect("lock").is_empty());
    assert_eq!(
        store.refresh_token(alice).await.as_deref(),
        Some("rt-alice"),
        "the rotated refresh token is kept"
    );
    // The provider refusing the site's own credentials disables nobody.
    f.provider.1.lock().expect("lock").invalid_client = true;
    let round = check_due(&live, 100 + 2 * interval).await;
    assert_eq!((round.active, round.unreachable), (0, 1));
    assert!(seen.lock().expect("lock").is_empty());
    f.provider.1.lock().expect("lock").invalid_client = false;
    f.provider.1.lock().expect("lock").refuse = true;
    let round = check_due(&live, 100 + 3 * interval).await;
    assert_eq!(round.disabled, [alice]);
    assert_eq!(*seen.lock().expect("lock"), [alice]);
}

#[tokio::test]
async fn without_a_refresh_token_app_passwords_lapse_max_age_after_sign_in() {
    let f = fixture().await;
    let alice = "alice@example.com";
    let max_age = 90 * 24 * 3600;
    let (status, _, page) = f.sign_in(|_| {}).await;
    assert_eq!(status, 303, "{page}");
    let s = f.store.store.standing(alice).await.expect("standing");
    assert!(s.checked && !s.disabled, "a refresh token is kept");
    f.provider.1.lock().expect("lock").no_refresh = true;
    let before = signin::now();
    let (status, _, page) = f.sign_in(|_| {}).await;
    assert_eq!(status, 303, "{page}");
    let s = f.store.store.standing(alice).await.expect("standing");
    assert!(!s.checked, "the old refresh token is forgotten");
    let until = s.valid_until.expect("a lapse date");
    assert!((before + max_age..=signin::now() + max_age).contains(&until));
    let (_, secret) = f.store.store.create(alice, "Phone").await.expect("create");
    let found = f.store.store.verify(secret.expose().as_bytes()).await;
    let found = found.expect("verify").expect("found");
    assert!(!found.lapsed(until - 1) && found.lapsed(until));
}

#[tokio::test]
async fn a_round_uses_at_most_eight_refresh_tokens_at_once() {
    use super::standing::{check_due, Check, CONCURRENCY};
    let f = fixture().await;
    let c = config(&CONFIG.replace("http://127.0.0.1:9", &f.issuer)).expect("config");
    let provider = flow::Provider::new(&c.directories["idp"], "https://x/oidc/callback".into());
    let users: Vec<String> = (0..30).map(|i| format!("u{i}@example.com")).collect();
    for user in &users {
        let sign_in = crate::apppass::SignIn {
            directory: "idp",
            user,
            refresh: Some(crate::secret::Secret::new("rt")),
            valid_until: 1_000,
            next_check: 100,
        };
        f.store.store.signed_in(sign_in).await.expect("signed in");
    }
    f.provider.1.lock().expect("lock").delay_ms = 50;
    let check = Check {
        provider: Arc::new(provider.expect("provider").expect("a client")),
        store: f.store.store.clone(),
        directory: "idp".into(),
        settings: c.directories["idp"].app_passwords.clone(),
        disabled: Arc::new(|_: &str| {}),
    };
    let started = std::time::Instant::now();
    let round = check_due(&check, 100).await;
    assert_eq!(round.active, users.len());
    let most = f.provider.1.lock().expect("lock").most_in_flight;
    assert!(most > 1 && most <= CONCURRENCY, "{most} at once");
    // 30 answers of 50 ms each, 8 at a time: about 4 x 50 ms, not 1.5 s.
    assert!(started.elapsed() < std::time::Duration::from_millis(1200));
    let metrics = crate::metrics::global().render();
    assert!(
        metrics.contains("standing_checks_total{directory=\"idp\",result=\"active\"}"),
        "{metrics}"
    );
}
