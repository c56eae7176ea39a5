//! OpenID Connect Back-Channel Logout 1.0 end to end: the real provider
//! (npm `oidc-provider` with its `backchannelLogout` feature) signs a
//! logout token for alice and POSTs it to the proxy's HTTP listener, which
//! ends alice's IMAP session (real Dovecot behind it) with `* BYE` within
//! a second while bob's goes on; forged logout tokens get 400 and end
//! nothing.
//!
//! The provider's `mail-client` gets its `backchannel_logout_uri` at run
//! time (the proxy's HTTP port is picked here), so these tests take the
//! peers exclusively.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SCOPE: &str = "openid email profile";
const CLIENT: &str = "mail-client";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The userinfo directory `test` with back-channel logout for `mail-client`
/// (its keys come from the issuer's discovery `jwks_uri`).
fn directory(peers: &Peers) -> String {
    format!(
        "{}issuer = \"{}\"\nbackchannel-logout.audience = \"{CLIENT}\"\ncache.ttl = \"5m\"\n",
        userinfo_directory(peers),
        peers.str(&["oidc", "issuer"])
    )
}

/// A proxy with `[server.http]` on a port of its own; that port.
fn start(peers: &Peers) -> (Proxy, u16) {
    let http = free_port();
    let mut opts = ProxyOptions::new(peers);
    opts.directory = directory(peers);
    opts.extra = format!("[server.http]\nbind = \"127.0.0.1:{http}\"\n");
    (Proxy::start(peers, &opts), http)
}

/// An IMAP session through the proxy, logged in with a fresh token of `sub`.
fn session(peers: &Peers, proxy: &Proxy, sub: &str) -> Raw {
    session_with(peers, proxy, sub, &mint_token(peers, sub, SCOPE, 300))
}

fn session_with(peers: &Peers, proxy: &Proxy, sub: &str, token: &str) -> Raw {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    let user = format!("{sub}@example.com");
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(&user), token)
    ));
    let done = c.until("a ");
    let last = done.last().cloned().unwrap_or_default();
    assert!(last.starts_with("a OK"), "{done:?}\n{}", proxy.log());
    c
}

fn assert_works(c: &mut Raw, tag: &str) {
    c.send(&format!("{tag} SELECT INBOX\r\n"));
    let lines = c.until(&format!("{tag} "));
    let last = lines.last().cloned().unwrap_or_default();
    assert!(last.starts_with(&format!("{tag} OK")), "{lines:?}");
}

/// POSTs a form body to the proxy's HTTP listener: status, headers, body.
fn post(port: u16, path: &str, form: &[&str]) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-D", "-", "-o", "-"]);
    for f in form {
        cmd.args(["--data-urlencode", f]);
    }
    let out = run(cmd.arg(format!("http://127.0.0.1:{port}{path}")));
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_string(), body.to_string())
}

fn logout(port: u16, token: &str) -> (u16, String, String) {
    post(
        port,
        "/backchannel-logout/test",
        &[&format!("logout_token={token}")],
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A well-formed logout token's claims for `sub` (unique `jti`).
fn claims(peers: &Peers, sub: &str) -> serde_json::Map<String, Value> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    json!({
        "iss": peers.str(&["oidc", "issuer"]), "aud": CLIENT, "iat": now(), "exp": now() + 120,
        "jti": format!("test-{}-{n}", now()), "sub": sub, "events": { EVENT: {} },
    })
    .as_object()
    .cloned()
    .expect("object")
}

/// The payload signed by the provider's own key, or by a key it never published.
fn signed(peers: &Peers, payload: &serde_json::Map<String, Value>, foreign: bool) -> String {
    let v = admin_post(
        peers,
        "/sign-logout",
        &json!({"payload": payload, "foreign": foreign}),
    );
    v["token"].as_str().expect("token").to_string()
}

#[test]
fn the_providers_logout_of_alice_ends_her_session_and_not_bobs() {
    let peers = peers_exclusive();
    let (proxy, http) = start(&peers);
    let uri = format!("http://127.0.0.1:{http}/backchannel-logout/test");
    let set = json!({"client_id": CLIENT, "backchannel_logout_uri": uri});
    admin_post(&peers, "/client", &set);

    let alice_token = mint_token(&peers, "alice", SCOPE, 300);
    let mut alice = session_with(&peers, &proxy, "alice", &alice_token);
    let mut bob = session(&peers, &proxy, "bob");
    assert_works(&mut alice, "s");
    alice.send("i IDLE\r\n");
    assert!(alice.expect_line().starts_with("+ "), "IDLE refused");

    // The provider signs the logout token and POSTs it (oidc-provider's
    // Client#backchannelLogout, as its end_session endpoint does).
    let started = Instant::now();
    let sent = admin_post(
        &peers,
        "/backchannel-logout",
        &json!({"sub": "alice", "client": CLIENT}),
    );
    assert_eq!(sent["status"], 200, "{sent}\n{}", proxy.log());
    let bye = alice.until("* BYE");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "BYE after {took:?}");
    assert!(
        bye.last().is_some_and(|l| l.starts_with("* BYE")),
        "{bye:?}"
    );
    assert_eq!(alice.line(), None, "alice's connection stays open");

    assert_works(&mut bob, "b");
    bob.send("n NOOP\r\n");
    assert!(bob
        .until("n ")
        .last()
        .is_some_and(|l| l.starts_with("n OK")));
    let log = proxy.wait_log("back-channel logout directory=");
    let line = log
        .lines()
        .find(|l| l.contains("back-channel logout directory="))
        .unwrap_or_default();
    assert!(
        line.contains("alice") && line.contains("sessions=1"),
        "{line}"
    );

    // Alice's cached token result was dropped: her next login (the same
    // token, still valid at the provider) asks the provider again.
    let userinfo = |p: &Peers| provider_stats(p)["userinfo"].as_u64().unwrap_or(0);
    let before = userinfo(&peers);
    drop(session_with(&peers, &proxy, "alice", &alice_token));
    assert_eq!(
        userinfo(&peers),
        before + 1,
        "the login was answered from the cache"
    );
    let before = userinfo(&peers);
    drop(session_with(&peers, &proxy, "alice", &alice_token));
    assert_eq!(userinfo(&peers), before, "the cache is in use");
}

#[test]
fn forged_logout_tokens_get_400_and_end_nothing() {
    let peers = peers_exclusive();
    let (proxy, http) = start(&peers);
    let mut alice = session(&peers, &proxy, "alice");

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "bad signature",
        signed(&peers, &claims(&peers, "alice"), true),
    ));
    let mut c = claims(&peers, "alice");
    c.insert("aud".into(), json!("other-app"));
    cases.push(("wrong audience", signed(&peers, &c, false)));
    let mut c = claims(&peers, "alice");
    c.insert("iss".into(), json!("http://127.0.0.1:1"));
    cases.push(("wrong issuer", signed(&peers, &c, false)));
    let mut c = claims(&peers, "alice");
    c.remove("events");
    cases.push(("events missing", signed(&peers, &c, false)));
    let mut c = claims(&peers, "alice");
    c.insert("nonce".into(), json!("n-1"));
    cases.push(("nonce", signed(&peers, &c, false)));
    let mut c = claims(&peers, "alice");
    c.insert("exp".into(), json!(now() - 3600));
    cases.push(("expired", signed(&peers, &c, false)));
    let none_header = b64(json!({"alg": "none", "typ": "logout+jwt"})
        .to_string()
        .as_bytes());
    let none_body = b64(Value::Object(claims(&peers, "alice"))
        .to_string()
        .as_bytes());
    let strip = |s: String| s.trim_end_matches('=').replace('+', "-").replace('/', "_");
    cases.push((
        "alg",
        format!("{}.{}.", strip(none_header), strip(none_body)),
    ));

    // A replay: the first use is good (it names a user with no session).
    let once = signed(&peers, &claims(&peers, "nobody"), false);
    let (status, head, body) = logout(http, &once);
    assert_eq!(status, 200, "{head}{body}\n{}", proxy.log());
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{head}"
    );
    assert!(body.is_empty(), "{body}");
    cases.push(("jti already used", once));

    for (why, token) in &cases {
        let (status, head, body) = logout(http, token);
        assert_eq!(status, 400, "{why}: {head}{body}");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{why}: {body}"));
        assert_eq!(answer["error"], "invalid_request", "{why}: {answer}");
        let description = answer["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(why), "{why}: {answer}");
        assert!(
            !body.contains(token.as_str()) && !body.contains("alice"),
            "{body}"
        );
    }
    let (status, _, _) = post(http, "/backchannel-logout/test", &["token=x"]);
    assert_eq!(status, 400, "no logout_token");
    let (status, _, _) = post(http, "/backchannel-logout/nope", &["logout_token=x"]);
    assert_eq!(status, 404, "unknown directory");

    assert_works(&mut alice, "a2");
    let log = proxy.log();
    for (_, token) in &cases {
        assert!(
            !log.contains(token.as_str()),
            "a logout token reached the log"
        );
    }
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("back-channel logout directory="))
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(
        ended[0].contains("sessions=0"),
        "a forged token ended a session: {ended:?}"
    );
}
