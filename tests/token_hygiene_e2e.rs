//! Issue 11, finding 1: "a token issued to any other application opens the
//! mailbox". End to end through the real proxy, against the real provider
//! (ID tokens from its own IdToken class, another application's tokens,
//! DPoP-bound tokens), Dovecot and Postfix:
//!
//! - an ID token, and another application's access token, are refused on a
//!   JWT directory, by AUTHENTICATE and as a password (LOGIN);
//! - an `openid`-only token is refused where a scope is required (userinfo);
//! - `crit` and sender-constrained (`cnf`) tokens are refused (JWT and
//!   introspection);
//! - an email with `email_verified: false` is no identity;
//! - an identity with upper-case letters is refused unless the upstream
//!   says `identity-case = "lower"` (Dovecot folds case);
//! - a directory that says neither audience nor scope is refused by
//!   `check` and at start-up; `allow-any-audience` is accepted, loudly.

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";
const SCOPE: &str = "openid email profile";
const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes";
const HS_ISSUER: &str = "https://hs.test";

/// A JWT directory at the test provider; `audience` as given.
fn jwt_directory(peers: &Peers, audience: &str) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.method = \"jwt\"\nissuer = \"{}\"\naudience = \"{audience}\"\nalgorithms = [\"RS256\"]\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "issuer"])
    )
}

fn start(peers: &Peers, directory: String) -> Proxy {
    let mut opts = ProxyOptions::new(peers);
    opts.directory = directory;
    opts.listener_extra = "password-tokens = true\n".into();
    Proxy::start(peers, &opts)
}

/// One AUTHENTICATE OAUTHBEARER (no authzid) on a fresh connection: the
/// tagged reply (a refusal's error challenge is answered).
fn bearer(peers: &Peers, proxy: &Proxy, token: &str) -> String {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
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

/// IMAP LOGIN with the token as the password (`password-tokens`).
fn password(peers: &Peers, proxy: &Proxy, user: &str, token: &str) -> String {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!("a LOGIN \"{user}\" \"{token}\"\r\n"));
    c.until("a ").pop().unwrap_or_default()
}

fn assert_refused(reply: &str, proxy: &Proxy, why: &str) {
    assert!(
        reply.starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{reply}\n{}",
        proxy.log()
    );
    proxy.wait_log(why);
}

fn assert_ok(reply: &str, proxy: &Proxy) {
    assert!(reply.starts_with("a OK"), "{reply}\n{}", proxy.log());
}

#[test]
fn an_id_token_is_refused_on_a_jwt_directory_and_as_a_password() {
    let peers = peers_read();
    // The tempting misconfiguration: the mail client's id as the audience,
    // which is exactly the `aud` of the ID tokens issued to it.
    let proxy = start(&peers, jwt_directory(&peers, "mail-client"));
    let at = mint_token(&peers, "alice", SCOPE, 300);
    let with_nonce = mint_id_token(&peers, "alice", Some("n-0S6_WzA2Mj"), Some(&at));
    let plain = mint_id_token(&peers, "alice", None, None);
    for token in [&with_nonce, &plain] {
        let reply = bearer(&peers, &proxy, token);
        assert_refused(&reply, &proxy, "is not an access token");
        let reply = password(&peers, &proxy, ALICE, token);
        assert_refused(&reply, &proxy, "is not an access token");
    }
    // Refused by its header (no `typ: at+jwt`), named by its claims.
    proxy.wait_log("an ID token is not an access token (it has `nonce`");
    proxy.wait_log("JWT without typ is not an access token");
    // With jwt.allow-untyped (providers that send typ JWT), the ID token
    // is still known by its nonce.
    let untyped = format!(
        "{}jwt.allow-untyped = true\n",
        jwt_directory(&peers, "mail-client")
    );
    let proxy = start(&peers, untyped);
    let reply = bearer(&peers, &proxy, &with_nonce);
    assert_refused(
        &reply,
        &proxy,
        "an ID token is not an access token (it has `nonce`)",
    );
    let reply = password(&peers, &proxy, ALICE, &with_nonce);
    assert_refused(&reply, &proxy, "an ID token is not an access token");
}

#[test]
fn another_applications_token_is_refused_on_a_jwt_directory_and_as_a_password() {
    let peers = peers_read();
    // The directory must say which tokens are for mail: without an
    // audience (or scope) the proxy does not start.
    let without = jwt_directory(&peers, "x").replace("audience = \"x\"\n", "");
    let (ok, out) = start_up(&peers, &without);
    assert!(
        !ok,
        "started with a directory that accepts any token:\n{out}"
    );
    assert!(out.contains("directory.test"), "{out}");

    let proxy = start(&peers, jwt_directory(&peers, "urn:mail"));
    let other = mint_token_with(
        &peers,
        json!({"sub": "alice", "scope": SCOPE, "format": "jwt", "client": "other-app", "resource": "urn:other"}),
    );
    let reply = bearer(&peers, &proxy, &other);
    assert_refused(&reply, &proxy, "wrong audience (aud)");
    let reply = password(&peers, &proxy, ALICE, &other);
    assert_refused(&reply, &proxy, "wrong audience (aud)");
    // The mail client's token for the mail resource logs in both ways.
    let mail = mint_token_format(&peers, "alice", SCOPE, 300, "jwt");
    assert_ok(&bearer(&peers, &proxy, &mail), &proxy);
    assert_ok(&password(&peers, &proxy, ALICE, &mail), &proxy);
}

#[test]
fn an_openid_only_token_is_refused_where_a_scope_is_required() {
    let peers = peers_read();
    // The account's `sub` is a mailbox: an `openid` token alone names it.
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = userinfo_directory(&peers).replace(
        "fields.username = \"preferred_username\"",
        "fields.username = \"sub\"",
    );
    opts.imap_identity = "username";
    let proxy = Proxy::start(&peers, &opts);
    let openid = mint_token(&peers, "carol@example.com", "openid", 300);
    let reply = bearer(&peers, &proxy, &openid);
    assert_refused(&reply, &proxy, "token lacks the required scope `email`");
    let full = mint_token(&peers, "carol@example.com", SCOPE, 300);
    assert_ok(&bearer(&peers, &proxy, &full), &proxy);
}

/// An HS256 token with any header, signed with the directory's secret.
fn hs256(header: Value, claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let key = jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .expect("sign");
    format!("{input}.{sig}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn crit_and_sender_constrained_tokens_are_refused() {
    let peers = peers_read();
    let hs = format!(
        "type = \"oidc\"\nendpoint.method = \"jwt\"\nissuer = \"{HS_ISSUER}\"\naudience = \"urn:mail\"\nalgorithms = [\"HS256\"]\nsecret = \"{HS_SECRET}\"\nfields.email = \"email\"\nfields.username = \"username\"\n"
    );
    let proxy = start(&peers, hs);
    let claims = json!({"iss": HS_ISSUER, "aud": "urn:mail", "exp": now() + 300,
        "email": ALICE, "username": "alice", "scope": SCOPE});
    let typed = json!({"alg": "HS256", "typ": "at+jwt"});
    assert_ok(
        &bearer(&peers, &proxy, &hs256(typed.clone(), claims.clone())),
        &proxy,
    );
    let crit = json!({"alg": "HS256", "typ": "at+jwt", "crit": ["urn:example:policy"], "urn:example:policy": "x"});
    let token = hs256(crit, claims.clone());
    assert_refused(&bearer(&peers, &proxy, &token), &proxy, "`crit`");
    assert_refused(&password(&peers, &proxy, ALICE, &token), &proxy, "`crit`");
    let unencoded = json!({"alg": "HS256", "typ": "at+jwt", "b64": false});
    let token = hs256(unencoded, claims.clone());
    assert_refused(&bearer(&peers, &proxy, &token), &proxy, "`b64`");
    let mut bound = claims;
    bound["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let token = hs256(typed, bound);
    assert_refused(
        &bearer(&peers, &proxy, &token),
        &proxy,
        "sender-constrained",
    );

    // DPoP-bound tokens issued by the provider: a JWT, and an opaque one
    // at introspection.
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let proxy = start(&peers, jwt_directory(&peers, "urn:mail"));
    let dpop = mint_token_with(
        &peers,
        json!({"sub": "alice", "scope": SCOPE, "format": "jwt", "jkt": jkt}),
    );
    assert_refused(&bearer(&peers, &proxy, &dpop), &proxy, "sender-constrained");
    let basic = &peers.info["oidc"]["basic_client"];
    let introspect = format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.url = \"{}\"\nendpoint.method = \"introspect\"\nauth.method = \"basic\"\nauth.username = \"{}\"\nauth.secret = \"{}\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "introspection"]),
        basic[0].as_str().unwrap_or_default(),
        basic[1].as_str().unwrap_or_default(),
    );
    let proxy = start(&peers, introspect);
    let dpop = mint_token_with(&peers, json!({"sub": "alice", "scope": SCOPE, "jkt": jkt}));
    assert_refused(&bearer(&peers, &proxy, &dpop), &proxy, "sender-constrained");
    assert_ok(
        &bearer(&peers, &proxy, &mint_token(&peers, "alice", SCOPE, 300)),
        &proxy,
    );
}

#[test]
fn an_unverified_email_is_no_identity() {
    let peers = peers_read();
    // mallory typed bob's address into her profile; the provider says so.
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let token = mint_token(&peers, "mallory", SCOPE, 300);
    assert_refused(
        &bearer(&peers, &proxy, &token),
        &proxy,
        "email is not verified",
    );
    assert_ok(
        &bearer(&peers, &proxy, &mint_token(&peers, "bob", SCOPE, 300)),
        &proxy,
    );
    // The same in a JWT access token, by AUTHENTICATE and as a password.
    let proxy = start(&peers, jwt_directory(&peers, "urn:mail"));
    let token = mint_token_format(&peers, "mallory", SCOPE, 300, "jwt");
    assert_refused(
        &bearer(&peers, &proxy, &token),
        &proxy,
        "email is not verified",
    );
    let reply = password(&peers, &proxy, "bob@example.com", &token);
    assert!(reply.starts_with("a NO"), "{reply}\n{}", proxy.log());
}

#[test]
fn identities_that_differ_only_by_case_never_share_a_mailbox_by_accident() {
    let peers = peers_read();
    // carol-mixed's address is Carol@Example.com; Dovecot folds user names,
    // so passed on as it is, it would open carol@example.com's mailbox.
    let token = mint_token(&peers, "carol-mixed", SCOPE, 300);
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let reply = bearer(&peers, &proxy, &token);
    assert_refused(&reply, &proxy, "has upper-case letters");
    // The administrator knows the provider's addresses are unique
    // regardless of case: lower-cased, the login is carol's.
    let mut opts = ProxyOptions::new(&peers);
    opts.upstream_extra = "identity-case = \"lower\"\n".into();
    let proxy = Proxy::start(&peers, &opts);
    assert_ok(&bearer(&peers, &proxy, &token), &proxy);
    proxy.wait_log("user=\"carol@example.com\"");
}

/// The harness configuration with `directory` as `[directory.test]`.
fn config_with(peers: &Peers, directory: &str) -> tempfile::NamedTempFile {
    let mut opts = ProxyOptions::new(peers);
    opts.directory = directory.to_string();
    let ports = ["imaps", "imap", "imap-plain", "submissions", "submission"]
        .iter()
        .map(|l| (l.to_string(), free_port()))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), Proxy::config_text(peers, &opts, &ports)).expect("write");
    file
}

/// `oauthbearer-proxy check`: success and its output.
fn check(peers: &Peers, directory: &str) -> (bool, String) {
    let file = config_with(peers, directory);
    let out = run(Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
        .arg("check")
        .arg("--config")
        .arg(file.path()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts the proxy for a moment: whether it was still running after its
/// start-up (bounded), and what it wrote.
fn start_up(peers: &Peers, directory: &str) -> (bool, String) {
    let file = config_with(peers, directory);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
        .arg("--config")
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("start the proxy");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut running = true;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            running = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    (
        running,
        std::fs::read_to_string(log.path()).unwrap_or_default(),
    )
}

#[test]
fn a_directory_without_audience_or_scope_is_refused_by_check_and_at_start_up() {
    let peers = peers_read();
    let open = userinfo_directory(&peers).replace("required-scope = \"email\"\n", "");
    let (ok, out) = check(&peers, &open);
    assert!(!ok, "check accepted it:\n{out}");
    for needle in [
        "directory.test",
        "`audience`",
        "`required-scope`",
        "allow-any-audience",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let (running, out) = start_up(&peers, &open);
    assert!(!running, "started:\n{out}");
    assert!(
        out.contains("directory.test") && out.contains("allow-any-audience"),
        "{out}"
    );

    // Knowingly open: accepted, with a warning naming the directory.
    let any = format!("{open}allow-any-audience = true\n");
    let (ok, out) = check(&peers, &any);
    assert!(ok, "{out}");
    assert!(
        out.contains("WARNING") && out.contains("directory.test: allow-any-audience"),
        "{out}"
    );
    let (running, out) = start_up(&peers, &any);
    assert!(running, "{out}");
    assert!(
        out.contains("WARN") && out.contains("directory.test: allow-any-audience"),
        "{out}"
    );
    // A scope userinfo cannot see is refused, saying what to use instead.
    let custom = userinfo_directory(&peers)
        .replace("required-scope = \"email\"", "required-scope = \"mail\"");
    let (ok, out) = check(&peers, &custom);
    assert!(
        !ok && out.contains("directory.test.required-scope"),
        "{out}"
    );
    assert!(out.contains("\"introspect\" or \"jwt\""), "{out}");
}
