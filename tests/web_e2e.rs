//! The app-password site end to end: the proxy with an `https` listener,
//! the real provider (npm oidc-provider with its own login and consent
//! pages), and Debian's chromium headless through WebDriver
//! (tests/clients/web_signin.py). Alice signs in at the provider's login
//! page, creates an app password and reads it off the page; the replayed
//! authorization response is refused with a clear page. Screenshots go to
//! docs/web-*.png. The password read off the page logs imaplib in and
//! sends bob a message with smtplib (bob reads it through the proxy); one
//! revoked in the browser is refused; after a restart of the proxy the
//! standing check still holds alice's refresh token, and when the provider
//! disables her, her open session ends and her password stops working.
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

/// The browser driver (tests/clients/web_signin.py) while it runs: its
/// first JSON line, then one answer per command.
struct Browser {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Browser {
    fn start(site: &str, login: &str, shots: &std::path::Path) -> Browser {
        use std::io::BufRead;
        let mut child = Command::new("/usr/bin/python3")
            .arg(manifest_dir().join("tests/clients/web_signin.py"))
            .args([site, login])
            .arg(shots)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the browser driver starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Browser { child, lines }
    }

    /// The driver's next JSON line (within a minute).
    fn answer(&mut self, proxy: &Proxy) -> Value {
        let line = self
            .lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the browser driver did not answer:\n{}", proxy.log()));
        serde_json::from_str(&line).expect("the driver's JSON")
    }

    fn command(&mut self, proxy: &Proxy, command: &str) -> Value {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("the driver reads");
        self.answer(proxy)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app password as the page shows it, without the grouping.
fn password_of(answer: &Value) -> String {
    let shown = answer["password"].as_str().unwrap_or("");
    let password: String = shown.chars().filter(char::is_ascii_alphanumeric).collect();
    assert_eq!(password.len(), 32, "{answer}");
    password
}

/// An IMAP session through `imaps`, logged in with an app password, in IDLE.
fn imap_idle_password(peers: &Peers, proxy: &Proxy, user: &str, password: &str) -> Raw {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a LOGIN {user} {password}\r\nb SELECT INBOX\r\nc IDLE\r\n"
    ));
    assert!(c.until("a ").last().unwrap().starts_with("a OK"));
    c.until("b ");
    assert!(c.expect_line().starts_with("+ "));
    c
}

/// Revoked in the browser: a password that worked is refused at once, the
/// other goes on working.
fn revoking_in_the_browser_refuses_it(peers: &Peers, proxy: &Proxy, browser: &mut Browser) {
    let laptop = password_of(&browser.command(proxy, "create Laptop"));
    let r = imaplib_login(peers, proxy, "alice@example.com", &laptop);
    assert_eq!(r["ok"], true, "{r}");
    let list = browser.command(proxy, "revoke Laptop");
    let list = list["list"].as_str().unwrap_or("");
    assert!(list.contains("Phone") && !list.contains("Laptop"), "{list}");
    let r = imaplib_login(peers, proxy, "alice@example.com", &laptop);
    assert_ne!(
        r["ok"], true,
        "a password revoked in the browser still works: {r}"
    );
}

/// After a restart the standing check goes on with the refresh token the
/// store kept (sealed): alice is disabled at the provider, the next round
/// refuses her, her open app-password session ends and the password stops
/// working; she is enabled again for the other tests.
fn after_a_restart_a_disabled_user_is_refused(peers: &Peers, proxy: &Proxy, password: &str) {
    wait_log(proxy, "active=1");
    let mut session = imap_idle_password(peers, proxy, "alice@example.com", password);
    admin_post(
        peers,
        "/account",
        &json!({"sub": "alice", "disabled": true}),
    );
    let started = std::time::Instant::now();
    let bye = session.line().unwrap_or_default();
    let waited = started.elapsed();
    admin_post(
        peers,
        "/account",
        &json!({"sub": "alice", "disabled": false}),
    );
    assert!(bye.starts_with("* BYE "), "{bye}\n{}", proxy.log());
    // Within the 10 s standing-check interval (plus its 1 s tick).
    assert!(waited < std::time::Duration::from_secs(12), "{waited:?}");
    let log = wait_log(proxy, "the provider refused the user's refresh token");
    assert!(
        log.contains("alice@example.com") && log.contains("sessions ended"),
        "{log}"
    );
    let r = imaplib_login(peers, proxy, "alice@example.com", password);
    assert_ne!(
        r["ok"], true,
        "a disabled user's app password still works: {r}"
    );
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
    let opts = site_config(&peers, port, &store);
    let proxy = Proxy::start(&peers, &opts);
    let docs = manifest_dir().join("docs");
    let mut browser = Browser::start(&site, "alice", &docs);
    let result = browser.answer(&proxy);
    assert_eq!(result["user"], "alice@example.com", "{result}");
    // Shown in groups for typing (`abcd efgh ...`).
    let password = password_of(&result);
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
    // The password the page showed logs imaplib in to alice's mailbox.
    let r = imaplib_login(&peers, &proxy, "alice@example.com", &password);
    assert_eq!(r["ok"], true, "{r}");
    // smtplib AUTH PLAIN with it sends to bob, who reads it through the
    // proxy with his own token.
    let subject = format!("From the web page {}", std::process::id());
    let sent = smtplib_send(&peers, &proxy, "alice@example.com", &password, &subject);
    assert!(sent.contains("SENT"), "{sent}\n{}", proxy.log());
    let bob = mint_token(&peers, "bob", "openid email profile", 300);
    wait_for_subject(&subject, || {
        imaplib_token(&peers, &proxy, "bob@example.com", &bob)
    });
    revoking_in_the_browser_refuses_it(&peers, &proxy, &mut browser);
    drop(browser);
    let log = proxy.log();
    assert!(log.contains("web: signed in"), "{log}");
    assert!(!log.contains(&password), "the password is never logged");
    assert!(
        !log.contains("site-secret"),
        "the client secret is never logged"
    );
    drop(proxy);
    let proxy = Proxy::start(&peers, &opts);
    after_a_restart_a_disabled_user_is_refused(&peers, &proxy, &password);
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

/// `curl -sk` with `args`: the headers and body it printed.
fn curl(args: &[&str]) -> String {
    let out = run(Command::new("curl").args(["-sk", "-D", "-"]).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `redirect_uri` the site's sign-in sends browsers to the provider with.
fn redirect_uri(location_headers: &str) -> String {
    let location = location_headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no redirect: {location_headers}"));
    let url = url::Url::parse(location.trim()).expect("a URL");
    let found = url.query_pairs().find(|(k, _)| k == "redirect_uri");
    found.map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// SIGHUP: a second site listener starts, the first one's `public-url`
/// changes in place, a sign-in begun before the reload is still known
/// after it; removing the second listener closes its port.
#[test]
fn a_reload_changes_the_site_in_place_and_keeps_sign_ins_under_way() {
    let peers = peers_read();
    let (port, second) = (free_port(), free_port());
    let store = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(&peers, &site_config(&peers, port, &store));
    let jar = store.path().join("cookies");
    let jar = jar.to_str().expect("path");
    let site = format!("https://127.0.0.1:{port}");
    let before = curl(&["-c", jar, &format!("{site}/signin")]);
    assert_eq!(redirect_uri(&before), format!("{site}/oidc/callback"));
    let state = url::Url::parse(
        before
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .expect("location")
            .trim(),
    )
    .expect("url")
    .query_pairs()
    .find(|(k, _)| k == "state")
    .map(|(_, v)| v.into_owned())
    .expect("state");

    let base = std::fs::read_to_string(&proxy.config_path).expect("config");
    let moved = base.replace(
        &format!("public-url = \"{site}/\""),
        &format!("public-url = \"https://localhost:{port}/\""),
    );
    let with_second = format!(
        "{moved}\n[listener.account2]\nprotocol = \"https\"\nbind = \"127.0.0.1:{second}\"\ndirectory = \"test\"\n"
    );
    std::fs::write(&proxy.config_path, with_second).expect("write");
    proxy.signal("HUP");
    wait_log(&proxy, "configuration reloaded");
    let after = curl(&[&format!("{site}/signin")]);
    assert_eq!(
        redirect_uri(&after),
        format!("https://localhost:{port}/oidc/callback"),
        "the running listener took the new public-url"
    );
    let other = curl(&[&format!("https://127.0.0.1:{second}/")]);
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // The sign-in begun before the reload: its state is still known, so the
    // (made-up) code goes to the provider, which refuses it.
    let callback = curl(&[
        "-b",
        jar,
        &format!("{site}/oidc/callback?code=made-up&state={state}"),
    ]);
    assert!(callback.contains("refused the sign-in"), "{callback}");

    std::fs::write(&proxy.config_path, &moved).expect("write");
    proxy.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", second)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "{second} still open");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
