//! End to end: app passwords (issue 14) against the real Dovecot and
//! Postfix. An app password put into the store logs Python's imaplib
//! (`LOGIN`) and smtplib (`AUTH PLAIN`) in as its owner; a wrong one is an
//! ordinary failure that never reaches Dovecot; a revoked one is refused
//! and its open session ends; two proxy instances on one PostgreSQL see
//! each other's changes within a second.

mod common;

use common::postgres::Postgres;
use common::*;
use oauthbearer_proxy::apppass;
use oauthbearer_proxy::config::{StoreSettings, StoreUrl};
use oauthbearer_proxy::secret::Secret;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("apppass-{tag}-{}-{nanos}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A proxy whose listeners take app passwords from `store` (a `[store]`
/// section), with a control socket.
fn proxy(peers: &Peers, store: &str, dir: &std::path::Path) -> Proxy {
    let mut opts = ProxyOptions::new(peers);
    opts.listener_extra = "app-passwords = true\n".into();
    opts.extra = store.to_string();
    opts.server_extra = format!(
        "control-socket = \"{}\"\n",
        dir.join(format!("{}.sock", unique("control"))).display()
    );
    Proxy::start(peers, &opts)
}

fn admin(proxy: &Proxy, args: &[&str]) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
        .arg("--config")
        .arg(&proxy.config_path)
        .args(args));
    assert!(out.status.success(), "{args:?}: {out:?}\n{}", proxy.log());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(r: &Value) -> bool {
    r["ok"] == false
        && r["error"]
            .as_str()
            .unwrap_or("")
            .contains("AUTHENTICATIONFAILED")
}

/// An IMAP session logged in with `password`, left open.
fn open_session(peers: &Peers, proxy: &Proxy, user: &str, password: &str) -> Raw {
    let mut c = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    assert!(c.expect_line().starts_with("* OK"));
    c.send(&format!("a LOGIN {user} \"{password}\"\r\n"));
    let ok = c.until("a ");
    assert!(
        ok.last().is_some_and(|l| l.starts_with("a OK")),
        "{ok:?}\n{}",
        proxy.log()
    );
    c
}

/// Waits (up to `within`) for the session to be told it ended.
fn ended_within(c: &mut Raw, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while let Ok(Some(line)) = c.line_within(deadline.saturating_duration_since(Instant::now())) {
        if line.starts_with("* BYE") {
            return Some(line);
        }
    }
    None
}

#[test]
fn sqlite_app_passwords_log_in_send_mail_and_stop_when_revoked() {
    let peers = peers_read();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("store.db");
    let proxy = proxy(
        &peers,
        &format!("[store]\nurl = \"sqlite://{}\"\n", db.display()),
        dir.path(),
    );
    let rt = runtime();
    let settings = StoreSettings {
        url: StoreUrl::Sqlite(db.clone()),
        ..StoreSettings::default()
    };
    let store = rt
        .block_on(apppass::open(&settings))
        .expect("open the store");
    let (phone, alice_pw) = rt.block_on(store.create(ALICE, "Phone")).unwrap();
    let (_, bob_pw) = rt.block_on(store.create(BOB, "Laptop")).unwrap();

    // imaplib LOGIN reads alice's mailbox.
    let r = imaplib_login(&peers, &proxy, ALICE, alice_pw.expose());
    assert_eq!(r["ok"], true, "{r}\n{}", proxy.log());
    assert!(
        r["subjects"]
            .to_string()
            .contains("Welcome alice@example.com"),
        "{r}"
    );
    // Typed without the dashes, in upper case: the same password.
    let bare = alice_pw.expose().replace('-', "").to_uppercase();
    assert_eq!(imaplib_login(&peers, &proxy, ALICE, &bare)["ok"], true);

    // smtplib AUTH PLAIN sends to bob, who reads it with his own.
    let subject = unique("smtp");
    let sent = smtplib_send(&peers, &proxy, ALICE, alice_pw.expose(), &subject);
    assert!(sent.contains("SENT"), "{sent}\n{}", proxy.log());
    wait_for_subject(&subject, || {
        imaplib_login(&peers, &proxy, BOB, bob_pw.expose())
    });

    wrong_ones_never_reach_dovecot(&peers, &proxy, &alice_pw, &bob_pw);

    // who shows how; list shows the last use (recorded in the background).
    let who: Vec<Value> = {
        let c = open_session(&peers, &proxy, ALICE, alice_pw.expose());
        let out = admin(&proxy, &["who", "--json"]);
        drop(c);
        serde_json::from_str(&out).unwrap()
    };
    assert!(
        who.iter()
            .any(|s| s["how"] == "app-password" && s["credential"] == phone.id.as_str()),
        "{who:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = admin(&proxy, &["app-passwords", "list", ALICE]);
        if list.contains("Phone") && list.contains("imap") && list.contains("127.0.0.1") {
            assert!(
                list.contains("standing: never signed in at the site: not checked"),
                "{list}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Revoked over the control socket: the open session ends, the next
    // login is refused; bob's is untouched.
    let mut open = open_session(&peers, &proxy, ALICE, alice_pw.expose());
    let out = admin(&proxy, &["app-passwords", "revoke", ALICE, "Phone"]);
    assert!(
        out.contains("1 app passwords revoked, 1 sessions ended"),
        "{out}"
    );
    let bye = ended_within(&mut open, Duration::from_secs(2));
    assert!(
        bye.as_deref().is_some_and(|l| l.contains("revoked")),
        "{bye:?}"
    );
    assert!(refused(&imaplib_login(
        &peers,
        &proxy,
        ALICE,
        alice_pw.expose()
    )));
    assert_eq!(
        imaplib_login(&peers, &proxy, BOB, bob_pw.expose())["ok"],
        true
    );
    proxy.wait_log("result=\"app-password-revoked\"");

    // Created over the control socket: printed once, works at once.
    let made = admin(&proxy, &["app-passwords", "create", ALICE, "Tablet"]);
    let made = made.trim();
    assert!(apppass::password::looks_like(made.as_bytes()), "{made}");
    assert_eq!(imaplib_login(&peers, &proxy, ALICE, made)["ok"], true);
    assert!(!proxy.log().contains(made), "the password reached the log");
    rt.block_on(store.revoke(ALICE, None)).unwrap();
    rt.block_on(store.revoke(BOB, None)).unwrap();
}

#[test]
fn two_instances_on_one_postgresql_see_each_others_changes_within_a_second() {
    let peers = peers_read();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let section = pg.store_section();
    let one = proxy(&peers, &section, dir.path());
    let two = proxy(&peers, &section, dir.path());
    let rt = runtime();
    let settings = StoreSettings {
        url: StoreUrl::Postgres(pg.url()),
        password: Some(Secret::new(common::postgres::PASSWORD)),
        hash_key: None,
        ca: None,
    };
    let store = rt
        .block_on(apppass::open(&settings))
        .expect("open the store");

    // Created (as the site on instance one would) and used on both.
    let (_, pw) = rt.block_on(store.create(ALICE, "Phone")).unwrap();
    for proxy in [&one, &two] {
        let r = imaplib_login(&peers, proxy, ALICE, pw.expose());
        assert_eq!(r["ok"], true, "{r}\n{}", proxy.log());
    }
    // Revoked on one: refused on two, and two's open session ends, within 1 s.
    let mut open = open_session(&peers, &two, ALICE, pw.expose());
    let revoked_at = Instant::now();
    let out = admin(&one, &["app-passwords", "revoke", ALICE, "Phone"]);
    assert!(out.contains("1 app passwords revoked"), "{out}");
    let bye = ended_within(&mut open, Duration::from_secs(1));
    assert!(
        bye.is_some(),
        "two's session did not end within 1 s\n{}",
        two.log()
    );
    assert!(refused(&imaplib_login(&peers, &two, ALICE, pw.expose())));
    assert!(revoked_at.elapsed() < Duration::from_secs(3));

    // The standing check's verdict: disabled on one instance's store, the
    // other's session ends and its logins are refused; restored, they work.
    let (_, pw) = rt.block_on(store.create(ALICE, "Laptop")).unwrap();
    let mut open = open_session(&peers, &one, ALICE, pw.expose());
    rt.block_on(store.set_standing(ALICE, false)).unwrap();
    let bye = ended_within(&mut open, Duration::from_secs(1));
    assert!(
        bye.is_some(),
        "one's session did not end within 1 s\n{}",
        one.log()
    );
    assert!(refused(&imaplib_login(&peers, &two, ALICE, pw.expose())));
    rt.block_on(store.set_standing(ALICE, true)).unwrap();
    assert_eq!(imaplib_login(&peers, &two, ALICE, pw.expose())["ok"], true);
    rt.block_on(store.revoke(ALICE, None)).unwrap();
}

/// A wrong app password (the right shape) and another user's name:
/// normal failures, decided without Dovecot; no password in the log.
fn wrong_ones_never_reach_dovecot(
    peers: &Peers,
    proxy: &Proxy,
    alice_pw: &Secret,
    bob_pw: &Secret,
) {
    let bare = alice_pw.expose().replace('-', "").to_uppercase();
    let stranger = format!("{}@example.com", unique("nobody"));
    let wrong = apppass::password::generate().unwrap();
    assert!(refused(&imaplib_login(
        peers,
        proxy,
        &stranger,
        wrong.expose()
    )));
    assert!(refused(&imaplib_login(peers, proxy, ALICE, wrong.expose())));
    assert!(refused(&imaplib_login(
        peers,
        proxy,
        BOB,
        alice_pw.expose()
    )));
    // Dovecot's own password (not of the app-password shape) still passes through.
    let r = imaplib_login(peers, proxy, ALICE, "alice-app-password");
    assert_eq!(r["ok"], true, "passthrough: {r}");
    let log = proxy.log();
    assert!(log.contains("no such app password"), "{log}");
    assert!(log.contains("the app password is not"), "{log}");
    assert!(
        !log.contains("upstream refused the password"),
        "passed through:\n{log}"
    );
    let dovecot_log = std::fs::read_to_string(peers.str(&["dovecot", "log"])).unwrap_or_default();
    assert!(
        !dovecot_log.contains(&stranger),
        "Dovecot was asked about {stranger}"
    );
    for secret in [
        alice_pw.expose(),
        bare.as_str(),
        bob_pw.expose(),
        wrong.expose(),
    ] {
        assert!(!log.contains(secret), "a password reached the log");
    }
}
