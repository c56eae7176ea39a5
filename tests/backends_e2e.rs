//! Several backends behind one upstream, end to end, with two real
//! Dovecots (peers.py --second-dovecot: the same users and master user;
//! each seeds a message whose subject names the instance, so the subject a
//! user reads says which backend served them). For `hash`, `claim` (the
//! test provider puts a `mailhost` claim in JWT access tokens) and `map`,
//! alice and bob land on their backend; SMTP submission goes through a
//! group whose other backend never answers. One backend stopped: its users
//! get the temporary failure on IMAP and POP3, the others are unaffected,
//! SMTP still delivers, `backend_up` says 0; with `failover = true` its
//! users are served by the other backend meanwhile; restarted, its users
//! log in again on it, without a proxy restart.

mod backends_support;
mod common;
use backends_support::*;
use common::*;
use serde_json::json;

const USERS: [&str; 2] = ["alice", "bob"];

fn email(user: &str) -> String {
    format!("{user}@example.com")
}

fn jwt_directory(peers: &Peers) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.method = \"jwt\"\nissuer = \"{}\"\naudience = \"urn:mail\"\nrequired-scope = \"email\"\nfields.email = \"email\"\nfields.username = \"username\"\n",
        peers.str(&["oidc", "issuer"])
    )
}

/// A JWT access token for `user` carrying `mailhost`.
fn token_with_mailhost(peers: &Peers, user: &str, mailhost: &str) -> String {
    mint_token_with(
        peers,
        json!({"sub": user, "scope": SCOPE, "ttl": 300, "format": "jwt",
               "claims": {"mailhost": mailhost}}),
    )
}

/// Each user reads the message of the backend `expected` names.
fn each_reads_their_backend(peers: &Peers, port: u16, tokens: &[(&str, String, &str)]) {
    for (user, token, backend) in tokens {
        let subject = imap_subject(peers, port, token).unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(
            subject,
            welcome(peers, dovecot_of(backend), &email(user)),
            "{user} should be on {backend}"
        );
    }
}

#[test]
fn hash_sends_each_user_to_one_backend_and_smtp_delivers() {
    let peers = two_dovecots();
    let (proxy, ports) = start_proxy(&peers, "routing.method = \"hash\"");
    let mut tokens = Vec::new();
    for user in USERS {
        let backend = route(&proxy, "mail", &email(user));
        let backend: &'static str = dovecot_backend(&backend);
        tokens.push((user, mint_token(&peers, user, SCOPE, 300), backend));
    }
    // Twice: the same backend every time.
    each_reads_their_backend(&peers, ports.imap, &tokens);
    each_reads_their_backend(&peers, ports.imap, &tokens);
    let (_, _, alice_backend) = &tokens[0];
    proxy.wait_log(&format!("backend=\"{alice_backend}\""));

    let token = &tokens[0].1;
    smtp_send(&peers, ports.smtp, token, "through a group").expect("SMTP submission");
    wait_delivered(&peers, "through a group");
}

fn dovecot_backend(name: &str) -> &'static str {
    match name {
        "mail1" => "mail1",
        "mail2" => "mail2",
        other => panic!("route said {other:?}"),
    }
}

#[test]
fn claim_routes_by_the_token_and_follows_a_changed_claim() {
    let peers = two_dovecots();
    let ports = GroupPorts::new();
    let mut opts = ProxyOptions::new(&peers);
    opts.directory = jwt_directory(&peers);
    opts.extra = group_config(
        &peers,
        &ports,
        "routing.method = \"claim\"\nrouting.claim = \"mailhost\"\nrouting.fallback = \"refuse\"",
        false,
    );
    opts.passthrough = false;
    let proxy = Proxy::start(&peers, &opts);
    let tokens = [
        (
            "alice",
            token_with_mailhost(&peers, "alice", "mail2"),
            "mail2",
        ),
        ("bob", token_with_mailhost(&peers, "bob", "mail1"), "mail1"),
    ];
    each_reads_their_backend(&peers, ports.imap, &tokens);
    // The provider now says alice lives on mail1: her next token follows.
    let moved = [(
        "alice",
        token_with_mailhost(&peers, "alice", "mail1"),
        "mail1",
    )];
    each_reads_their_backend(&peers, ports.imap, &moved);
    // A claim naming no backend: a temporary failure, never a guess.
    let nowhere = token_with_mailhost(&peers, "alice", "mail9");
    let refused = imap_subject(&peers, ports.imap, &nowhere).unwrap_err();
    assert!(refused.starts_with("a NO [UNAVAILABLE]"), "{refused}");
    proxy.wait_log("the token's claim `mailhost` = \"mail9\" names no configured backend");
    // No claim at all, and fallback = "refuse": refused.
    let plain = mint_token_format(&peers, "alice", SCOPE, 300, "jwt");
    let refused = imap_subject(&peers, ports.imap, &plain).unwrap_err();
    assert!(refused.starts_with("a NO"), "{refused}");
}

#[test]
fn map_routes_by_the_file() {
    let peers = two_dovecots();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.map");
    std::fs::write(
        &map,
        "# who lives where\nalice@example.com mail2\nbob@example.com mail1\n",
    )
    .unwrap();
    let routing = format!(
        "routing.method = \"map\"\nrouting.map = \"{}\"\nrouting.fallback = \"hash\"",
        map.display()
    );
    let (proxy, ports) = start_proxy(&peers, &routing);
    let tokens = [
        ("alice", mint_token(&peers, "alice", SCOPE, 300), "mail2"),
        ("bob", mint_token(&peers, "bob", SCOPE, 300), "mail1"),
    ];
    each_reads_their_backend(&peers, ports.imap, &tokens);
    assert_eq!(route(&proxy, "mail", "alice@example.com"), "mail2");
    // POP3 routes the same way.
    for (user, token, _) in &tokens {
        let reply = pop3_auth(&peers, ports.pop3, token);
        assert!(reply.starts_with("+OK"), "{user}: {reply}");
    }
    // The map is read again on reload: bob moves to mail2.
    std::fs::write(&map, "alice@example.com mail2\nbob@example.com mail2\n").unwrap();
    proxy.signal("HUP");
    proxy.wait_log("configuration reloaded");
    let bob = [("bob", tokens[1].1.clone(), "mail2")];
    each_reads_their_backend(&peers, ports.imap, &bob);
}

/// The proxy's `/metrics` line for `series` (with its labels), if any.
fn metric(port: u16, series: &str) -> Option<String> {
    let out = run(std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics")));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let found = text.lines().find(|l| l.starts_with(series));
    found.map(|l| l[series.len()..].trim().to_string())
}

/// Polls `f` until it gives a value (bounded).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

const MAIL2_UP: &str = "oauthbearer_proxy_backend_up{upstream=\"mail\",backend=\"mail2\"}";

#[test]
fn a_stopped_backend_fails_its_users_only_until_it_is_back() {
    let peers = two_dovecots_exclusive();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.map");
    std::fs::write(&map, "alice@example.com mail2\nbob@example.com mail1\n").unwrap();
    let routing = format!(
        "routing.method = \"map\"\nrouting.map = \"{}\"",
        map.display()
    );
    let metrics = free_port();
    let ports = GroupPorts::new();
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = format!("[server.metrics]\nbind = \"127.0.0.1:{metrics}\"\n");
    opts.extra = group_config(&peers, &ports, &routing, false);
    let proxy = Proxy::start(&peers, &opts);
    // The same, but the backends "share their storage".
    let (shared, shared_ports) = start_proxy(&peers, &format!("{routing}\nfailover = true"));
    let alice = mint_token(&peers, "alice", SCOPE, 300);
    assert!(imap_subject(&peers, ports.imap, &alice).is_ok());
    // The relay group's second backend never answers: marked down.
    proxy.wait_log("backend=nowhere");
    assert_eq!(metric(metrics, MAIL2_UP).as_deref(), Some("1"));

    peers.control("stop dovecot2");
    let result = std::panic::catch_unwind(|| {
        while_mail2_is_down(&peers, &ports, metrics);
        // failover = true: alice is served by mail1 meanwhile.
        assert_eq!(
            imap_subject(&peers, shared_ports.imap, &alice).unwrap(),
            welcome(&peers, "dovecot", "alice@example.com")
        );
    });
    peers.control("start dovecot2");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    // Back: alice logs in again, on her own backend, without a restart
    // (with failover too).
    // (With failover, until mail2 passed two checks she is still sent to mail1.)
    let home = welcome(&peers, "dovecot2", "alice@example.com");
    for port in [ports.imap, shared_ports.imap] {
        eventually("alice served by mail2 again", || {
            (imap_subject(&peers, port, &alice).ok()? == home).then_some(())
        });
    }
    eventually("mail2 up again in the metrics", || {
        (metric(metrics, MAIL2_UP)? == "1").then_some(())
    });
    drop(shared);
}

/// mail2 is stopped: alice (on mail2) gets the temporary failure on IMAP
/// and POP3, bob (on mail1) is served, SMTP still delivers.
fn while_mail2_is_down(peers: &Peers, ports: &GroupPorts, metrics: u16) {
    let alice = mint_token(peers, "alice", SCOPE, 300);
    let bob = mint_token(peers, "bob", SCOPE, 300);
    let refused = eventually("alice refused", || {
        imap_subject(peers, ports.imap, &alice).err()
    });
    assert!(refused.starts_with("a NO [UNAVAILABLE]"), "{refused}");
    let pop3 = pop3_auth(peers, ports.pop3, &alice);
    assert!(pop3.starts_with("-ERR [SYS/TEMP]"), "{pop3}");
    assert_eq!(
        imap_subject(peers, ports.imap, &bob).unwrap(),
        welcome(peers, "dovecot", "bob@example.com")
    );
    smtp_send(peers, ports.smtp, &alice, "while mail2 is down").expect("SMTP");
    wait_delivered(peers, "while mail2 is down");
    assert_eq!(metric(metrics, MAIL2_UP).as_deref(), Some("0"));
    let failed = "oauthbearer_proxy_backend_health_checks_total{upstream=\"mail\",backend=\"mail2\",result=\"failed\"}";
    eventually("a failed check counted", || metric(metrics, failed));
}

#[test]
fn who_names_each_sessions_backend() {
    let peers = two_dovecots();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.map");
    std::fs::write(&map, "alice@example.com mail2\nbob@example.com mail1\n").unwrap();
    let socket = dir.path().join("control.sock");
    let ports = GroupPorts::new();
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = format!("control-socket = \"{}\"\n", socket.display());
    let routing = format!(
        "routing.method = \"map\"\nrouting.map = \"{}\"",
        map.display()
    );
    opts.extra = group_config(&peers, &ports, &routing, false);
    let proxy = Proxy::start(&peers, &opts);
    let mut open = Vec::new();
    for user in USERS {
        let token = mint_token(&peers, user, SCOPE, 300);
        let mut c = Raw::connect(ports.imap, false, &peers.ca());
        c.expect_line();
        c.send(&format!(
            "a AUTHENTICATE OAUTHBEARER {}\r\n",
            oauthbearer(None, &token)
        ));
        let reply = c.until("a ").pop().unwrap_or_default();
        assert!(reply.starts_with("a OK"), "{user}: {reply}");
        open.push(c);
    }
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
            .arg("--config")
            .arg(&proxy.config_path)
            .args(["who", "--json"]),
    );
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("who --json");
    let backend_of = |user: &str| {
        sessions
            .iter()
            .find(|s| s["user"] == email(user))
            .map(|s| s["backend"].clone())
    };
    assert_eq!(backend_of("alice"), Some(json!("mail2")), "{sessions:?}");
    assert_eq!(backend_of("bob"), Some(json!("mail1")), "{sessions:?}");
    for mut c in open {
        c.send("z LOGOUT\r\n");
        let _ = c.until("z ");
    }
}
