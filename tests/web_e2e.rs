//! The app-password site end to end: the proxy with an `https` listener,
//! the real provider (npm oidc-provider with its own login and consent
//! pages), and Debian's chromium headless through WebDriver
//! (tests/clients/web_signin.py). Alice signs in at the provider's login
//! page, creates an app password and reads it off the page; the replayed
//! authorization response is refused with a clear page. Screenshots go to
//! docs/web-*.png. The password read off the page logs imaplib in, and
//! stops working when the provider disables alice (the standing check).
//! Signing out at the provider's own end-session page ends alice's mail
//! sessions through its back-channel logout (issue 13).

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// The test proxy with the site on `port`; its app-password store lives
/// in `store` (a temporary directory the caller keeps).
fn site_config(peers: &Peers, port: u16, store: &tempfile::TempDir) -> ProxyOptions {
    let mut opts = ProxyOptions::new(peers);
    // The mail listeners take the app passwords the site creates.
    opts.listener_extra = "app-passwords = true\n".into();
    opts.extra.push_str(&format!(
        "\n[store]\nurl = \"sqlite://{}\"\n",
        store.path().join("store.db").display()
    ));
    opts.directory.push_str(&format!(
        "issuer = \"{}\"\nclient.id = \"mail-site\"\nclient.secret = \"site-secret\"\napp-passwords.standing-check = \"10s\"\n",
        peers.str(&["oidc", "issuer"])
    ));
    opts.extra.push_str(&format!(
        "\n[listener.account]\nprotocol = \"https\"\nbind = \"127.0.0.1:{port}\"\ndirectory = \"test\"\npublic-url = \"https://127.0.0.1:{port}/\"\n"
    ));
    opts
}

/// The proxy's log once it shows `needle` (a standing-check round is
/// every 10 s here).
fn wait_log(proxy: &Proxy, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    loop {
        let log = proxy.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log never showed {needle:?}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The standing check: alice's refresh token works, then alice is
/// disabled at the provider and the next round refuses her (and ends her
/// sessions); she is enabled again for the other tests.
fn standing_check_refuses_a_disabled_user(peers: &Peers, proxy: &Proxy) {
    wait_log(proxy, "active=1");
    admin_post(
        peers,
        "/account",
        &json!({"sub": "alice", "disabled": true}),
    );
    let log = wait_log(proxy, "the provider refused the user's refresh token");
    admin_post(
        peers,
        "/account",
        &json!({"sub": "alice", "disabled": false}),
    );
    assert!(log.contains("alice@example.com"), "{log}");
    assert!(log.contains("sessions ended"), "{log}");
}

#[test]
fn alice_signs_in_at_the_provider_and_creates_an_app_password() {
    let peers = peers_read();
    let port = free_port();
    let store = tempfile::tempdir().expect("tempdir");
    let site = format!("https://127.0.0.1:{port}/");
    admin_post(
        &peers,
        "/site-client",
        &json!({"redirect_uri": format!("{site}oidc/callback")}),
    );
    let proxy = Proxy::start(&peers, &site_config(&peers, port, &store));
    let docs = manifest_dir().join("docs");
    let out = run(Command::new("/usr/bin/python3")
        .arg(manifest_dir().join("tests/clients/web_signin.py"))
        .arg(&site)
        .arg("alice")
        .arg(&docs));
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("the driver's JSON");
    assert_eq!(result["user"], "alice@example.com", "{result}");
    // Shown in groups for typing (`ABCD-EFGH-...`).
    let password: String = result["password"]
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    assert_eq!(password.len(), 32, "{result}");
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(
        result["list"].as_str().unwrap_or("").contains("Phone"),
        "{result}"
    );
    assert_eq!(result["callbacks"], 1, "{result}");
    assert!(
        result["replay"]
            .as_str()
            .unwrap_or("")
            .contains("no longer valid"),
        "{result}"
    );
    let log = proxy.log();
    assert!(log.contains("web: signed in"), "{log}");
    assert!(!log.contains(&password), "the password is never logged");
    assert!(
        !log.contains("site-secret"),
        "the client secret is never logged"
    );
    // The password the page showed logs imaplib in to alice's mailbox.
    let r = imaplib_login(&peers, &proxy, "alice@example.com", &password);
    assert_eq!(r["ok"], true, "{r}");
    standing_check_refuses_a_disabled_user(&peers, &proxy);
    // Disabled at the provider: the app password stops working.
    let r = imaplib_login(&peers, &proxy, "alice@example.com", &password);
    assert_ne!(
        r["ok"], true,
        "a disabled user's app password still works: {r}"
    );
    for shot in [
        "web-signin",
        "web-provider-login",
        "web-created",
        "web-list",
        "web-refused",
    ] {
        assert!(docs.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}

#[test]
fn a_forged_callback_is_refused_with_a_page() {
    let peers = peers_read();
    let port = free_port();
    let store = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(&peers, &site_config(&peers, port, &store));
    let out = run(Command::new("curl").args([
        "-sk",
        "-w",
        "\n%{http_code}",
        &format!("https://127.0.0.1:{port}/oidc/callback?code=stolen&state=guessed"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("no longer valid"), "{text}");
    let csrf = run(Command::new("curl").args([
        "-sk",
        "-w",
        "\n%{http_code}",
        "-d",
        "name=x",
        &format!("https://127.0.0.1:{port}/app-passwords"),
    ]));
    let text = String::from_utf8_lossy(&csrf.stdout);
    assert!(
        text.ends_with("\n303"),
        "not signed in: back to the start page: {text}"
    );
    let auto = run(Command::new("curl").args([
        "-sk",
        &format!("https://127.0.0.1:{port}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.com"),
    ]));
    let xml = String::from_utf8_lossy(&auto.stdout);
    let imaps = proxy.port("imaps").to_string();
    assert!(xml.contains(&format!("<port>{imaps}</port>")), "{xml}");
    assert!(xml.contains("<socketType>SSL</socketType>"), "{xml}");
    assert!(xml.contains("<socketType>STARTTLS</socketType>"), "{xml}");
}

/// An IMAP session through the proxy's `imaps` listener, logged in with a
/// token of `sub`, in IDLE.
fn imap_idle(peers: &Peers, proxy: &Proxy, sub: &str, user: &str) -> Raw {
    let token = mint_token(peers, sub, "openid email profile", 600);
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(user), &token)
    ));
    assert!(c.until("a ").last().unwrap().starts_with("a OK"));
    c.send("b SELECT INBOX\r\nc IDLE\r\n");
    c.until("b ");
    assert!(c.expect_line().starts_with("+ "));
    c
}

#[test]
fn signing_out_at_the_provider_ends_the_users_mail_sessions_within_a_second() {
    // Exclusive: it changes the site client's back-channel logout URI.
    let peers = peers_exclusive();
    let (port, http_port) = (free_port(), free_port());
    let store = tempfile::tempdir().expect("tempdir");
    let site = format!("https://127.0.0.1:{port}/");
    admin_post(
        &peers,
        "/site-client",
        &json!({"redirect_uri": format!("{site}oidc/callback")}),
    );
    admin_post(
        &peers,
        "/client",
        &json!({"client_id": "mail-site",
                "backchannel_logout_uri": format!("http://127.0.0.1:{http_port}/backchannel-logout/test")}),
    );
    let mut opts = site_config(&peers, port, &store);
    opts.directory
        .push_str("backchannel-logout.audience = \"mail-site\"\n");
    opts.server_extra
        .push_str(&format!("http.bind = \"127.0.0.1:{http_port}\"\n"));
    let proxy = Proxy::start(&peers, &opts);
    let mut alice = imap_idle(&peers, &proxy, "alice", "alice@example.com");
    let mut bob = imap_idle(&peers, &proxy, "bob", "bob@example.com");
    // alice signs in at the provider (through the site), then signs out
    // there: the provider's end-session sends its back-channel logout.
    let end_session = format!("{}/session/end", peers.str(&["oidc", "issuer"]));
    let out = run(Command::new("/usr/bin/python3")
        .arg(manifest_dir().join("tests/clients/web_logout.py"))
        .args([&site, &end_session, "alice"]));
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let started = std::time::Instant::now();
    let bye = alice.line().unwrap_or_default();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the BYE came {:?} after the provider's logout page",
        started.elapsed()
    );
    assert!(
        bye.starts_with("* BYE ") && bye.contains("Signed out"),
        "{bye}"
    );
    proxy.wait_log("result=\"logout\"");
    bob.send("DONE\r\nd NOOP\r\n");
    assert!(bob.until("d ").last().unwrap().starts_with("d OK"));
}
