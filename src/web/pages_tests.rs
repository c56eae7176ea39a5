//! The pages over a real socket: sign-in refusals, CSRF, creating and
//! revoking app passwords through the store, sign-out, autoconfig.

use super::*;

struct Running {
    base: String,
    site: Arc<Site>,
    store: TempStore,
    http: reqwest::Client,
}

async fn start() -> Running {
    let c = config(CONFIG).expect("config");
    let store = TempStore::new().await;
    let site = Arc::new(Site::new(&c, &c.web[0], store.store.clone()).expect("site"));
    let socket = crate::http::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(crate::http::serve(socket, router(site.clone())));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Running {
        base: format!("http://127.0.0.1:{port}"),
        site,
        store,
        http,
    }
}

impl Running {
    /// A signed-in session for alice: (its cookie header, its CSRF token).
    fn alice(&self) -> (String, String) {
        let session = Session {
            user: "alice@example.com".into(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
        };
        self.site.sessions.insert("sid-alice".into(), session);
        let cookie = format!(
            "{SESSION_COOKIE}={}",
            self.site.signer.sign("session", "sid-alice")
        );
        (cookie, self.site.signer.mac("csrf", "sid-alice"))
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .expect("post");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    async fn get(&self, path: &str, cookie: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("get");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    async fn listed(&self) -> usize {
        self.store
            .store
            .list("alice@example.com")
            .await
            .expect("list")
            .len()
    }
}

#[tokio::test]
async fn creating_needs_the_csrf_token_and_stores_nothing_without_it() {
    let s = start().await;
    let (cookie, csrf) = s.alice();
    let (status, page) = s.get("/", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("alice@example.com") && page.contains(&csrf),
        "{page}"
    );
    for form in [
        vec![("name", "Phone")],
        vec![("name", "Phone"), ("csrf", "wrong")],
        vec![
            ("name", "Phone"),
            ("csrf", &s.site.signer.mac("csrf", "sid-other")),
        ],
    ] {
        let (status, page) = s.post("/app-passwords", &cookie, &form).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("did not come from this site"), "{page}");
    }
    assert_eq!(s.listed().await, 0, "nothing stored");
    let (status, page) = s
        .post(
            "/app-passwords",
            &cookie,
            &[("name", "Phone"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let grouped = page
        .split("<p class=\"password\" id=\"password\">")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .expect("the password on the page");
    let password: String = grouped.split_whitespace().collect();
    assert_eq!(password.len(), 32);
    assert!(s.store.check("alice@example.com", &password).await);
    assert!(page.contains("configuration profile"), "{page}");
    let (_, page) = s.get("/", &cookie).await;
    assert!(page.contains("Phone") && page.contains("never"), "{page}");
    let (status, page) = s
        .post(
            "/app-passwords",
            &cookie,
            &[("name", "<b>x</b>"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") && !page.contains("<b>x"),
        "escaped: {page}"
    );
    assert_eq!(s.listed().await, 2);
    let (status, _) = s
        .post("/app-passwords/revoke", &cookie, &[("all", "yes")])
        .await;
    assert_eq!(status, 400, "revoking needs the token too");
    assert_eq!(s.listed().await, 2);
    let list = s.store.store.list("alice@example.com").await.expect("list");
    let second = list.iter().find(|p| p.name == "<b>x</b>").expect("listed");
    let (status, _) = s
        .post(
            "/app-passwords/revoke",
            &cookie,
            &[("id", second.id.as_str()), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(s.listed().await, 1, "only the one named");
    assert!(
        s.store.check("alice@example.com", &password).await,
        "the other stays"
    );
    let (status, _) = s
        .post(
            "/app-passwords/revoke",
            &cookie,
            &[("all", "yes"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(s.listed().await, 0);
    assert!(!s.store.check("alice@example.com", &password).await);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let s = start().await;
    let (cookie, csrf) = s.alice();
    let (status, _) = s.post("/signout", &cookie, &[("csrf", "nope")]).await;
    assert_eq!(status, 400);
    let (status, _) = s.post("/signout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (_, page) = s.get("/", &cookie).await;
    assert!(page.contains("id=\"signin\""), "signed out: {page}");
    let (status, _) = s
        .post("/app-passwords", &cookie, &[("name", "x"), ("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "back to the start page");
    assert_eq!(s.listed().await, 0);
}

#[tokio::test]
async fn a_callback_without_its_state_is_refused() {
    let s = start().await;
    s.site.flows.insert(
        "state-a".into(),
        state::Flow {
            nonce: "n".into(),
            verifier: "v".into(),
        },
    );
    let ours = format!(
        "{SIGNIN_COOKIE}={}",
        s.site.signer.sign("signin", "state-a")
    );
    let forged = format!("{SIGNIN_COOKIE}=state-a.AAAA");
    for (query, cookie) in [
        ("code=c&state=state-a", ""),              // no cookie: another browser
        ("code=c&state=state-b", ours.as_str()),   // state mismatch
        ("code=c", ours.as_str()),                 // no state
        ("code=c&state=state-a", forged.as_str()), // cookie not ours
    ] {
        let (status, page) = s.get(&format!("/oidc/callback?{query}"), cookie).await;
        assert_eq!(status, 400, "{query}");
        assert!(page.contains("no longer valid"), "{page}");
    }
    // The state is used up by its first callback (here the provider's
    // error): a replay of the same callback finds nothing.
    let (status, page) = s
        .get("/oidc/callback?error=access_denied&state=state-a", &ours)
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("refused the sign-in"), "{page}");
    let (_, page) = s.get("/oidc/callback?code=c&state=state-a", &ours).await;
    assert!(page.contains("no longer valid"), "{page}");
    assert!(s.store.refresh_token("alice@example.com").await.is_none());
}

#[tokio::test]
async fn claims_that_name_no_mailbox_are_refused() {
    let s = start().await;
    let claims = json!({"sub": "x", "preferred_username": "bob"});
    let r = signin::session_of(&s.site, claims.as_object().expect("object"));
    assert!(matches!(r, Err(Refusal::Claims(_))), "{r:?}");
    let claims = json!({"sub": "x", "email": "Alice@Example.com"});
    let r = signin::session_of(&s.site, claims.as_object().expect("object"));
    assert!(matches!(r, Err(Refusal::Claims(_))), "upper case: {r:?}");
    let claims = json!({"sub": "x", "email": "alice@example.com", "email_verified": false});
    assert!(signin::session_of(&s.site, claims.as_object().expect("object")).is_err());
    let claims = json!({"sub": "x", "email": "alice@example.com"});
    let ok = signin::session_of(&s.site, claims.as_object().expect("object")).expect("maps");
    assert_eq!(ok.user, "alice@example.com");
}

#[tokio::test]
async fn autoconfig_is_served_at_both_paths() {
    let s = start().await;
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.org",
        "/mail/config-v1.1.xml?emailaddress=alice%40example.org",
    ] {
        let (status, xml) = s.get(path, "").await;
        assert_eq!(status, 200);
        assert!(xml.contains("<emailProvider id=\"example.org\">"), "{xml}");
        assert!(
            xml.contains("<hostname>imap.example.com</hostname>"),
            "{xml}"
        );
    }
}

#[tokio::test]
async fn the_profile_has_the_password_only_when_asked() {
    let s = start().await;
    let (cookie, csrf) = s.alice();
    let base = [
        ("csrf", csrf.as_str()),
        ("name", "Phone"),
        ("password", "abcd efgh"),
    ];
    let (status, plist) = s.post("/profile", &cookie, &base).await;
    assert_eq!(status, 200);
    assert!(plist.contains("com.apple.mail.managed"), "{plist}");
    assert!(!plist.contains("abcd efgh"), "not inline unless asked");
    let mut inline = base.to_vec();
    inline.push(("inline", "yes"));
    let (status, plist) = s.post("/profile", &cookie, &inline).await;
    assert_eq!(status, 200);
    assert!(plist.contains("<string>abcd efgh</string>"), "{plist}");
    let (status, _) = s.post("/profile", &cookie, &base[1..]).await;
    assert_eq!(status, 400, "CSRF token required");
}

#[tokio::test]
async fn the_page_says_how_long_app_passwords_work() {
    let s = start().await;
    let (cookie, _) = s.alice();
    let (_, page) = s.get("/", &cookie).await;
    assert!(!page.contains("id=\"validity\""), "never signed in: {page}");
    let sign_in = |refresh: Option<&str>| crate::apppass::SignIn {
        directory: "idp",
        user: "alice@example.com",
        refresh: refresh.map(crate::secret::Secret::new),
        valid_until: 1_767_225_600,
        next_check: 0,
    };
    s.store
        .store
        .signed_in(sign_in(None))
        .await
        .expect("signed in");
    let (_, page) = s.get("/", &cookie).await;
    assert!(
        page.contains("<strong id=\"valid-until\">2026-01-01 00:00 UTC</strong>"),
        "{page}"
    );
    s.store
        .store
        .signed_in(sign_in(Some("rt")))
        .await
        .expect("signed in");
    let (_, page) = s.get("/", &cookie).await;
    assert!(page.contains("it is asked every 5 minutes"), "{page}");
    assert!(!page.contains("valid-until"), "{page}");
}
