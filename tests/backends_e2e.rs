//! Several backends behind one upstream, end to end, with two real
//! Dovecots (peers.py --second-dovecot: the same users and master user;
//! each seeds a message whose subject names the instance, so the subject a
//! user reads says which backend served them). For `hash`, `claim` (the
//! test provider puts a `mailhost` claim in JWT access tokens) and `map`,
//! alice and bob land on their backend; SMTP submission goes through a
//! group whose other backend never answers. One backend stopped: its users
//! get the temporary failure on IMAP and POP3, the others are unaffected,
//! SMTP still delivers; restarted, its users log in again.

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
}

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
    let (proxy, ports) = start_proxy(&peers, &routing);
    let alice = mint_token(&peers, "alice", SCOPE, 300);
    let bob = mint_token(&peers, "bob", SCOPE, 300);
    assert!(imap_subject(&peers, ports.imap, &alice).is_ok());
    // The relay group's second backend never answers: marked down.
    proxy.wait_log("backend=nowhere");

    peers.control("stop dovecot2");
    let result = std::panic::catch_unwind(|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let refused = loop {
            match imap_subject(&peers, ports.imap, &alice) {
                Err(e) => break e,
                Ok(_) => assert!(std::time::Instant::now() < deadline, "still served"),
            }
        };
        assert!(refused.starts_with("a NO [UNAVAILABLE]"), "{refused}");
        let pop3 = pop3_auth(&peers, ports.pop3, &alice);
        assert!(pop3.starts_with("-ERR [SYS/TEMP]"), "{pop3}");
        // bob's backend is up: unaffected; SMTP delivers.
        assert_eq!(
            imap_subject(&peers, ports.imap, &bob).unwrap(),
            welcome(&peers, "dovecot", "bob@example.com")
        );
        smtp_send(&peers, ports.smtp, &alice, "while mail2 is down").expect("SMTP");
        wait_delivered(&peers, "while mail2 is down");
    });
    peers.control("start dovecot2");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    proxy.wait_log("backend is up again");
    // Back: alice logs in again, on her own backend, without a restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let subject = loop {
        match imap_subject(&peers, ports.imap, &alice) {
            Ok(s) => break s,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(subject, welcome(&peers, "dovecot2", "alice@example.com"));
}
