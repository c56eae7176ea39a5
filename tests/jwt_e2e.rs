//! The token validation engine end to end, against the real OpenID
//! provider: JWT access tokens validated locally (no provider request per
//! login), key rotation, the cache (hits, stale-if-error during an outage),
//! client-secret-post introspection with endpoints from discovery, several
//! directories on one listener, tokens as passwords and `verify-token`.
//!
//! Tests that count provider requests, rotate keys or stop the provider take
//! the peers exclusively.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";

fn jwt_directory(peers: &Peers) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.method = \"jwt\"\nissuer = \"{}\"\naudience = \"urn:mail\"\nrequired-scope = \"email\"\nalgorithms = [\"RS256\", \"ES256\"]\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "issuer"])
    )
}

fn jwt(peers: &Peers, sub: &str) -> String {
    mint_token_format(peers, sub, SCOPE, 300, "jwt")
}

fn count(peers: &Peers, what: &str) -> u64 {
    provider_stats(peers)[what].as_u64().unwrap_or(0)
}

/// One OAUTHBEARER login on a fresh connection; the tagged reply line.
fn login(peers: &Peers, proxy: &Proxy, token: &str) -> String {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), token)
    ));
    let line = c.expect_line();
    if line.starts_with("+ ") {
        c.send("AQ==\r\n");
        return c.until("a ").pop().unwrap_or_default();
    }
    if line.starts_with("a ") {
        return line;
    }
    c.until("a ").pop().unwrap_or_default()
}

fn assert_ok(reply: &str, proxy: &Proxy) {
    assert!(reply.starts_with("a OK"), "{reply}\n{}", proxy.log());
}

#[test]
fn jwt_logins_make_no_provider_request_after_warm_up() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = jwt_directory(&peers);
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    // Warm-up: discovery and JWKS (fetched at start-up).
    assert_ok(&login(&peers, &proxy, &token), &proxy);
    let before = provider_stats(&peers);
    for _ in 0..5 {
        assert_ok(&login(&peers, &proxy, &jwt(&peers, "alice")), &proxy);
    }
    let after = provider_stats(&peers);
    // Minting goes through the admin port, which is not counted.
    assert_eq!(
        before["total"], after["total"],
        "before {before}\nafter {after}"
    );
    assert!(before["jwks"].as_u64().unwrap_or(0) >= 1, "{before}");

    // Refused locally too: another user's mailbox, a token without the email scope.
    let bob = jwt(&peers, "bob");
    let reply = login(&peers, &proxy, &bob);
    assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    let no_email = mint_token_format(&peers, "alice", "openid profile", 300, "jwt");
    let reply = login(&peers, &proxy, &no_email);
    assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    proxy.wait_log("required scope `email`");
}

#[test]
fn key_rotation_at_the_provider_without_restart() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = jwt_directory(&peers);
    let proxy = Proxy::start(&peers, &opts);
    let old = jwt(&peers, "alice");
    assert_ok(&login(&peers, &proxy, &old), &proxy);
    let rotated = admin_post(&peers, "/rotate-keys", &json!({"keep_old": false}));
    let new = jwt(&peers, "alice");
    assert_ne!(old, new);
    let jwks_before = count(&peers, "jwks");
    // The new kid is unknown: one refresh, then the login succeeds.
    assert_ok(&login(&peers, &proxy, &new), &proxy);
    assert_eq!(count(&peers, "jwks"), jwks_before + 1, "rotated {rotated}");
    // Further logins with the new key need no refresh.
    assert_ok(&login(&peers, &proxy, &jwt(&peers, "alice")), &proxy);
    assert_eq!(count(&peers, "jwks"), jwks_before + 1);
    // The old key is gone from the JWKS: its tokens are refused, and the
    // unknown-kid refresh is rate-limited (no further JWKS request).
    let reply = login(&peers, &proxy, &old);
    assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    assert_eq!(count(&peers, "jwks"), jwks_before + 1);
    proxy.wait_log("unknown signing key");
}

#[test]
fn cache_hit_avoids_a_provider_request() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = format!("{}cache.ttl = \"5m\"\n", userinfo_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let token = mint_token(&peers, "alice", SCOPE, 300);
    let before = count(&peers, "userinfo");
    assert_ok(&login(&peers, &proxy, &token), &proxy);
    assert_ok(&login(&peers, &proxy, &token), &proxy);
    assert_ok(&login(&peers, &proxy, &token), &proxy);
    assert_eq!(count(&peers, "userinfo"), before + 1);
    // A refused token is not cached (negative-ttl unset): each attempt asks.
    let before = count(&peers, "userinfo");
    login(&peers, &proxy, "not-a-token");
    login(&peers, &proxy, "not-a-token");
    assert_eq!(count(&peers, "userinfo"), before + 2);
}

#[test]
fn provider_down_cached_tokens_still_log_in_new_ones_are_temporary_failures() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = format!(
        "{}cache.ttl = \"1s\"\ncache.stale-if-error = \"1h\"\n",
        userinfo_directory(&peers)
    );
    let proxy = Proxy::start(&peers, &opts);
    let known = mint_token(&peers, "alice", SCOPE, 300);
    let unseen = mint_token(&peers, "alice", SCOPE, 300);
    assert_ok(&login(&peers, &proxy, &known), &proxy);
    peers.control("stop oidc");
    std::thread::sleep(Duration::from_millis(1200)); // past the ttl: stale now
    let cached = login(&peers, &proxy, &known);
    let new = login(&peers, &proxy, &unseen);
    peers.control("start oidc");
    assert_ok(&cached, &proxy);
    assert!(new.starts_with("a NO [UNAVAILABLE]"), "{new}");
    proxy.wait_log("stale-if-error");
}

#[test]
fn client_secret_post_introspection_with_endpoints_from_discovery() {
    let peers = peers_read();
    let post = &peers.info["oidc"]["post_client"];
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nissuer = \"{}\"\nendpoint.method = \"introspect\"\nauth.method = \"client-secret-post\"\nauth.username = \"{}\"\nauth.secret = \"{}\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "issuer"]),
        post[0].as_str().unwrap(),
        post[1].as_str().unwrap()
    );
    let proxy = Proxy::start(&peers, &opts);
    assert_ok(
        &login(&peers, &proxy, &mint_token(&peers, "alice", SCOPE, 300)),
        &proxy,
    );
    // The error challenge names the discovery document and the scope.
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "bogus")
    ));
    let line = c.expect_line();
    let ch: Value = serde_json::from_slice(&b64_decode(line.trim_start_matches("+ "))).unwrap();
    assert_eq!(
        ch["openid-configuration"],
        peers.str(&["oidc", "discovery"]),
        "{ch}"
    );
    assert_eq!(ch["scope"], "email");
    // Wrong client secret: the provider refuses us, a temporary failure.
    opts.directory = opts
        .directory
        .replace(post[1].as_str().unwrap(), "wrong-secret");
    let proxy = Proxy::start(&peers, &opts);
    let reply = login(&peers, &proxy, &mint_token(&peers, "alice", SCOPE, 300));
    assert!(reply.starts_with("a NO [UNAVAILABLE]"), "{reply}");
}

#[test]
fn one_listener_with_several_directories() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    // An opaque token tries "local" (JWT only: refused without a request),
    // then "test" (userinfo). A JWT goes to "local" by its issuer.
    opts.listener_directories = "[\"local\", \"test\"]".into();
    opts.extra = format!("[directory.local]\n{}", jwt_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    assert_ok(&login(&peers, &proxy, &token), &proxy); // warm-up
    let userinfo = count(&peers, "userinfo");
    assert_ok(&login(&peers, &proxy, &jwt(&peers, "alice")), &proxy);
    assert_eq!(
        count(&peers, "userinfo"),
        userinfo,
        "the JWT went to `local`"
    );
    assert_ok(
        &login(&peers, &proxy, &mint_token(&peers, "alice", SCOPE, 300)),
        &proxy,
    );
    assert_eq!(
        count(&peers, "userinfo"),
        userinfo + 1,
        "the opaque token reached `test`"
    );
    let reply = login(&peers, &proxy, "neither");
    assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
}

fn verify_token(
    proxy: &Proxy,
    directory: &str,
    token: Option<&str>,
    stdin: Option<&str>,
) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"));
    cmd.arg("verify-token")
        .arg("--config")
        .arg(&proxy.config_path)
        .args(["--directory", directory])
        .args(token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run verify-token");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or("").as_bytes())
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("verify-token");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "verify-token printed {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn verify_token_exit_codes() {
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.extra = format!("[directory.local]\n{}", jwt_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    let (code, out) = verify_token(&proxy, "local", Some(&token), None);
    assert_eq!(code, 0, "{out}");
    // `local` is on no listener: the user is the username.
    assert_eq!(out["user"], "alice");
    assert_eq!(out["identity"]["username"], "alice");
    assert_eq!(out["claims"]["aud"], "urn:mail");
    assert!(out["claims"]["exp"].is_number());
    assert!(
        !out.to_string().contains(&token),
        "the token is never printed"
    );
    // From standard input, through userinfo.
    let opaque = mint_token(&peers, "alice", SCOPE, 300);
    let (code, out) = verify_token(&proxy, "test", None, Some(&format!("{opaque}\n")));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["identity"]["email"], ALICE);
    // Invalid.
    let (code, out) = verify_token(&proxy, "test", Some("bogus"), None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("userinfo answered 401"),
        "{out}"
    );
    let (code, out) = verify_token(&proxy, "local", Some(&format!("{token}x")), None);
    assert_eq!(code, 1, "{out}");
    // Provider unavailable.
    peers.control("stop oidc");
    let down = verify_token(&proxy, "test", Some(&opaque), None);
    let down_jwt = verify_token(&proxy, "local", Some(&token), None);
    peers.control("start oidc");
    assert_eq!(down.0, 2, "{}", down.1);
    assert_eq!(down.1["unavailable"], true);
    assert_eq!(down_jwt.0, 2, "{}", down_jwt.1);
}

#[test]
fn password_tokens_with_imaplib_login_and_smtp_auth_plain() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.listener_directories = "[\"local\", \"test\"]".into();
    opts.listener_extra = "password-tokens = true\n".into();
    opts.extra = format!("[directory.local]\n{}", jwt_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    let r = imaplib_login(&peers, &proxy, ALICE, &token);
    assert_eq!(r["ok"], true, "{r}\n{}", proxy.log());
    assert!(
        r["subjects"]
            .to_string()
            .contains("Welcome alice@example.com"),
        "{r}"
    );
    // Another user's name with alice's token.
    let r = imaplib_login(&peers, &proxy, "bob@example.com", &token);
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("AUTHENTICATIONFAILED"),
        "{r}"
    );
    // An app password still passes through to Dovecot.
    let r = imaplib_login(&peers, &proxy, ALICE, "alice-app-password");
    assert_eq!(r["ok"], true, "{r}");

    // SMTP AUTH PLAIN with the token as the password.
    let mut c = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert!(c.expect_line().starts_with("220"));
    c.send("EHLO client.test\r\n");
    let ehlo = c.until("250 ");
    assert!(ehlo.iter().any(|l| l.contains("PLAIN")), "{ehlo:?}");
    c.send(&format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0{ALICE}\0{token}").as_bytes())
    ));
    let reply = c.expect_line();
    assert!(reply.starts_with("235"), "{reply}\n{}", proxy.log());
    assert!(
        !proxy.log().contains(&token),
        "the token never reaches the log"
    );
}

#[test]
fn password_tokens_without_passthrough_take_any_password_as_a_token() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.passthrough = false;
    opts.listener_extra = "password-tokens = true\n".into();
    let proxy = Proxy::start(&peers, &opts);
    let opaque = mint_token(&peers, "alice", SCOPE, 300);
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    let greeting = c.expect_line();
    assert!(
        greeting.contains("AUTH=PLAIN") && !greeting.contains("LOGINDISABLED"),
        "{greeting}"
    );
    c.send("a LOGIN alice@example.com alice-app-password\r\n");
    assert!(c
        .until("a ")
        .pop()
        .unwrap_or_default()
        .starts_with("a NO [AUTHENTICATIONFAILED]"));
    c.send(&format!("b LOGIN alice@example.com \"{opaque}\"\r\n"));
    let reply = c.until("b ").pop().unwrap_or_default();
    assert!(reply.starts_with("b OK"), "{reply}\n{}", proxy.log());
    // AUTHENTICATE PLAIN on another connection.
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE PLAIN {}\r\n",
        b64(format!("\0{ALICE}\0{opaque}").as_bytes())
    ));
    let reply = c.until("a ").pop().unwrap_or_default();
    assert!(reply.starts_with("a OK"), "{reply}\n{}", proxy.log());
}

#[test]
fn the_error_challenge_names_the_directory_that_refused() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    // The first directory names no issuer; `local` does.
    opts.listener_directories = "[\"test\", \"local\"]".into();
    opts.extra = format!("[directory.local]\n{}", jwt_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let no_email = mint_token_format(&peers, "alice", "openid profile", 300, "jwt");
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, &no_email)
    ));
    let line = c.expect_line();
    let ch: Value = serde_json::from_slice(&b64_decode(line.trim_start_matches("+ "))).unwrap();
    assert_eq!(ch["status"], "insufficient_scope", "{ch}");
    assert_eq!(ch["scope"], "email", "{ch}");
    assert_eq!(
        ch["openid-configuration"],
        peers.str(&["oidc", "discovery"]),
        "{ch}"
    );
    c.send("AQ==\r\n");
    assert!(c.expect_line().starts_with("a NO [AUTHENTICATIONFAILED]"));
    // An opaque token refused by every directory: the first one's hints
    // (`test` has none).
    c.send(&format!(
        "b AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, "bogus")
    ));
    let line = c.expect_line();
    let ch: Value = serde_json::from_slice(&b64_decode(line.trim_start_matches("+ "))).unwrap();
    assert_eq!(ch["status"], "invalid_token", "{ch}");
    assert!(ch.get("openid-configuration").is_none(), "{ch}");
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => assert!(std::time::Instant::now() < deadline, "metrics: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read metrics");
    text
}

#[test]
fn cache_and_jwks_counters_are_in_the_metrics() {
    let peers = peers_read();
    let metrics_port = free_port();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = format!("{}cache.ttl = \"5m\"\n", jwt_directory(&peers));
    opts.extra = format!("[server.metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n");
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    for _ in 0..3 {
        assert_ok(&login(&peers, &proxy, &token), &proxy);
    }
    let text = scrape(metrics_port);
    for line in [
        "oauthbearer_proxy_token_cache_hits_total{directory=\"test\"} 2",
        "oauthbearer_proxy_token_cache_misses_total{directory=\"test\"} 1",
        "oauthbearer_proxy_token_cache_stale_answers_total{directory=\"test\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    assert!(
        text.contains("oauthbearer_proxy_jwks_fetches_total{directory=\"test\"} 1")
            || text.contains("oauthbearer_proxy_jwks_fetches_total{directory=\"test\"} 2"),
        "{text}"
    );
}

#[test]
fn password_tokens_through_the_login_mechanism_on_imap_and_smtp() {
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.listener_directories = "[\"local\", \"test\"]".into();
    opts.listener_extra = "password-tokens = true\n".into();
    opts.extra = format!("[directory.local]\n{}", jwt_directory(&peers));
    let proxy = Proxy::start(&peers, &opts);
    let token = jwt(&peers, "alice");
    // IMAP AUTHENTICATE LOGIN: user name and password prompts.
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send("a AUTHENTICATE LOGIN\r\n");
    assert!(c.expect_line().starts_with("+ "));
    c.send(&format!("{}\r\n", b64(ALICE.as_bytes())));
    assert!(c.expect_line().starts_with("+ "));
    c.send(&format!("{}\r\n", b64(token.as_bytes())));
    let reply = c.until("a ").pop().unwrap_or_default();
    assert!(reply.starts_with("a OK"), "{reply}\n{}", proxy.log());
    // SMTP AUTH LOGIN with the user name as initial response.
    let mut c = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    assert!(c.expect_line().starts_with("220"));
    c.send("EHLO client.test\r\n");
    c.until("250 ");
    c.send(&format!("AUTH LOGIN {}\r\n", b64(ALICE.as_bytes())));
    assert!(c.expect_line().starts_with("334 "));
    c.send(&format!("{}\r\n", b64(token.as_bytes())));
    let reply = c.expect_line();
    assert!(reply.starts_with("235"), "{reply}\n{}", proxy.log());
    // A refused token-password: a plain 535, no error challenge.
    let mut c = Raw::connect(proxy.port("submissions"), true, &peers.ca());
    c.expect_line();
    c.send("EHLO client.test\r\n");
    c.until("250 ");
    c.send(&format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0bob@example.com\0{token}").as_bytes())
    ));
    let reply = c.expect_line();
    assert!(reply.starts_with("535 5.7.8"), "{reply}");
}
