//! Sessions end when access ends (issue 13), against the real provider,
//! Dovecot and Postfix: re-validation ends the sessions of a revoked token
//! (IMAP in IDLE, SMTP submission) and only those; a provider outage keeps
//! sessions; `session.at-expiry`; `who` and `kick` over the control socket.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SCOPE: &str = "openid email profile";

/// An IMAP session through the proxy's `imaps` listener, logged in with
/// `token`, in IDLE.
fn imap_idle(proxy: &Proxy, peers: &Peers, source: &str, user: &str, token: &str) -> Raw {
    let mut c = Raw::connect_from(source, proxy.port("imaps"), true, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(user), token)
    ));
    let l = c.until("a ");
    assert!(l.last().unwrap().starts_with("a OK"), "{l:?}");
    c.send("b SELECT INBOX\r\n");
    let l = c.until("b ");
    assert!(l.last().unwrap().starts_with("b OK"), "{l:?}");
    c.send("c IDLE\r\n");
    let l = c.expect_line();
    assert!(l.starts_with("+ "), "{l}");
    c
}

/// Leaves IDLE and checks the session still works.
fn imap_still_works(c: &mut Raw) {
    c.send("DONE\r\n");
    let l = c.until("c ");
    assert!(l.last().unwrap().starts_with("c OK"), "{l:?}");
    c.send("d NOOP\r\n");
    let l = c.until("d ");
    assert!(l.last().unwrap().starts_with("d OK"), "{l:?}");
}

/// An SMTP submission session through `submissions`, authenticated.
fn smtp_session(proxy: &Proxy, peers: &Peers, source: &str, user: &str, token: &str) -> Raw {
    let mut c = Raw::connect_from(source, proxy.port("submissions"), true, &peers.ca());
    let l = c.expect_line();
    assert!(l.starts_with("220"), "{l}");
    c.send("EHLO client.example\r\n");
    c.until("250 ");
    c.send(&format!(
        "AUTH OAUTHBEARER {}\r\n",
        oauthbearer(Some(user), token)
    ));
    let l = c.expect_line();
    assert!(l.starts_with("235"), "{l}");
    c
}

/// RFC 7009 revocation at the provider's own endpoint, as the mail client
/// the token was issued to (a public client).
fn revoke(peers: &Peers, token: &str) {
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--data-urlencode")
        .arg(format!("token={token}"))
        .args(["-d", "client_id=mail-client"])
        .arg(peers.str(&["oidc", "revocation"])));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
}

/// Reads the next line within `within`; None when the session closed.
fn line_within(c: &mut Raw, within: Duration) -> (Option<String>, Duration) {
    let t = Instant::now();
    let l = c.line();
    let took = t.elapsed();
    assert!(
        took <= within,
        "waited {took:?} for a line, more than {within:?}"
    );
    (l, took)
}

fn revalidating(peers: &Peers, every: &str, extra: &str) -> ProxyOptions {
    let mut opts = ProxyOptions::new(peers);
    opts.directory = format!(
        "{}session.revalidate = \"{every}\"\n{extra}",
        userinfo_directory(peers)
    );
    opts
}

#[test]
fn revoking_a_token_ends_that_users_imap_and_smtp_sessions_and_no_others() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &revalidating(&peers, "2s", ""));
    let alice_token = mint_token(&peers, "alice", SCOPE, 600);
    let bob_token = mint_token(&peers, "bob", SCOPE, 600);
    let mut alice_imap = imap_idle(&proxy, &peers, "127.0.0.31", ALICE, &alice_token);
    let mut alice_smtp = smtp_session(&proxy, &peers, "127.0.0.31", ALICE, &alice_token);
    let mut bob_imap = imap_idle(&proxy, &peers, "127.0.0.32", BOB, &bob_token);
    let mut bob_smtp = smtp_session(&proxy, &peers, "127.0.0.32", BOB, &bob_token);

    revoke(&peers, &alice_token);
    let limit = Duration::from_secs(3); // revalidate + 1 s
    let (bye, took) = line_within(&mut alice_imap, limit);
    let bye = bye.expect("alice's IMAP session gets a BYE");
    assert!(
        bye.starts_with("* BYE ") && bye.contains("revoked"),
        "{bye}"
    );
    assert_eq!(alice_imap.line(), None, "closed after the BYE");
    eprintln!("alice's IMAP session ended {took:?} after the revocation");
    let (reply, _) = line_within(&mut alice_smtp, limit);
    let reply = reply.expect("alice's SMTP session gets a 421");
    assert!(reply.starts_with("421 4.7.0 proxy.test "), "{reply}");
    assert_eq!(alice_smtp.line(), None);

    // Bob goes on, both sessions.
    imap_still_works(&mut bob_imap);
    bob_smtp.send("NOOP\r\n");
    let l = bob_smtp.expect_line();
    assert!(l.starts_with("250"), "{l}");
    let log = proxy.wait_log("result=\"revoked\"");
    assert!(log.contains("re-validation ends sessions"), "{log}");
    assert!(!log.contains(&alice_token), "a token reached the log");
    // The revoked token cannot log in again either.
    let mut again = Raw::connect(proxy.port("imaps"), true, &peers.ca());
    again.expect_line();
    again.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(Some(ALICE), &alice_token)
    ));
    assert!(again.expect_line().starts_with("+ "));
}

#[test]
fn sessions_are_kept_while_the_provider_is_unreachable_and_end_once_it_answers_refused() {
    let peers = peers_exclusive();
    let mut opts = revalidating(&peers, "1s", "");
    opts.directory = opts
        .directory
        .replace("timeout = \"5s\"", "timeout = \"500ms\"");
    let proxy = Proxy::start(&peers, &opts);
    let alice_token = mint_token(&peers, "alice", SCOPE, 600);
    let bob_token = mint_token(&peers, "bob", SCOPE, 600);
    let mut alice = imap_idle(&proxy, &peers, "127.0.0.33", ALICE, &alice_token);
    let mut bob = imap_idle(&proxy, &peers, "127.0.0.34", BOB, &bob_token);
    let provider = Paused::provider(&peers);
    // Two intervals and more with the provider frozen (requests time out).
    std::thread::sleep(Duration::from_millis(3500));
    let log = proxy.log();
    assert!(
        log.contains("re-validation could not reach the provider")
            && log.contains("sessions are kept"),
        "{log}"
    );
    drop(provider);
    imap_still_works(&mut alice);
    imap_still_works(&mut bob);
    alice.send("e IDLE\r\n");
    assert!(alice.expect_line().starts_with("+ "));
    revoke(&peers, &alice_token);
    let (bye, _) = line_within(&mut alice, Duration::from_secs(3));
    assert!(bye.expect("BYE").contains("revoked"));
    bob.send("f NOOP\r\n");
    assert!(bob.until("f ").last().unwrap().starts_with("f OK"));
}

/// The provider process stopped (SIGSTOP) until dropped (SIGCONT): it
/// keeps its state but answers nothing.
struct Paused(String);

impl Paused {
    fn provider(peers: &Peers) -> Paused {
        let pid = peer_pid(peers, "oidc");
        let out = run(Command::new("kill").args(["-STOP", &pid]));
        assert!(out.status.success(), "{out:?}");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = run(Command::new("kill").args(["-CONT", &self.0]));
    }
}

/// The PID of a peer, from peers.py's `status`.
fn peer_pid(peers: &Peers, name: &str) -> String {
    let status = peers.control_reply("status");
    let json: serde_json::Value =
        serde_json::from_str(status.trim_start_matches("ok").trim()).expect("status JSON");
    json[name].to_string()
}

fn jwt_directory(peers: &Peers, at_expiry: &str) -> String {
    format!(
        "type = \"oidc\"\ntimeout = \"5s\"\nendpoint.method = \"jwt\"\nissuer = \"{}\"\naudience = \"urn:mail\"\nrequired-scope = \"email\"\nalgorithms = [\"RS256\", \"ES256\"]\nfields.email = \"email\"\nfields.username = \"username\"\nclock-skew = \"0s\"\nsession.at-expiry = \"{at_expiry}\"\n",
        peers.str(&["oidc", "issuer"])
    )
}

#[test]
fn at_expiry_end_closes_a_session_when_its_token_expires_and_keep_does_not() {
    let peers = peers_read();
    for (policy, ends) in [("end", true), ("keep", false)] {
        let mut opts = ProxyOptions::new(&peers);
        opts.directory = jwt_directory(&peers, policy);
        let proxy = Proxy::start(&peers, &opts);
        let token = mint_token_format(&peers, "alice", SCOPE, 3, "jwt");
        let started = Instant::now();
        let mut c = imap_idle(&proxy, &peers, "127.0.0.35", ALICE, &token);
        if ends {
            let (line, _) = line_within(&mut c, Duration::from_secs(6));
            let bye = line.expect("a BYE at expiry");
            assert!(
                bye.starts_with("* BYE ") && bye.contains("expired"),
                "{bye}"
            );
            assert!(
                started.elapsed() >= Duration::from_secs(2),
                "ended too early"
            );
            proxy.wait_log("result=\"expired\"");
        } else {
            // Well past the token's expiry the session is silent in IDLE,
            // and still works.
            assert!(
                c.quiet_for(Duration::from_secs(5)),
                "keep: the session got a line"
            );
            imap_still_works(&mut c);
        }
    }
}

fn admin(proxy: &Proxy, args: &[&str]) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_oauthbearer-proxy"))
        .arg("--config")
        .arg(&proxy.config_path)
        .args(args))
}

fn who(proxy: &Proxy) -> Vec<serde_json::Value> {
    let out = admin(proxy, &["who", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("who --json")
}

#[test]
fn who_lists_exactly_the_open_sessions_and_kick_ends_only_the_named_ones() {
    let peers = peers_read();
    let dir = tempfile::tempdir().expect("tempdir");
    // Others may enter the directory: the socket's own mode must refuse them.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("control.sock");
    let mut opts = ProxyOptions::new(&peers);
    opts.server_extra = format!("control-socket = \"{}\"\n", socket.display());
    let proxy = Proxy::start(&peers, &opts);
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    assert!(who(&proxy).is_empty());

    let alice_token = mint_token(&peers, "alice", SCOPE, 600);
    let bob_token = mint_token(&peers, "bob", SCOPE, 600);
    let mut alice = imap_idle(&proxy, &peers, "127.0.0.41", ALICE, &alice_token);
    let mut bob = imap_idle(&proxy, &peers, "127.0.0.42", BOB, &bob_token);
    let mut bob_smtp = smtp_session(&proxy, &peers, "127.0.0.43", BOB, &bob_token);
    let sessions = who(&proxy);
    let mut seen: Vec<(String, String, String)> = sessions
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().to_string(),
                s["protocol"].as_str().unwrap().to_string(),
                s["client"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (ALICE.into(), "imap".into(), "127.0.0.41".into()),
            (BOB.into(), "imap".into(), "127.0.0.42".into()),
            (BOB.into(), "smtp".into(), "127.0.0.43".into()),
        ]
    );
    for s in &sessions {
        assert_eq!(s["how"], "token");
        assert_eq!(s["mechanism"], "OAUTHBEARER");
        assert_eq!(s["directory"], "test");
        assert_eq!(s["sub"].as_str().map(|v| !v.is_empty()), Some(true), "{s}");
        assert_eq!(s["credential"].as_str().map(str::len), Some(12), "{s}");
        if s["protocol"] == "imap" {
            // SELECT and IDLE went through the relay.
            assert!(s["bytes_to_client"].as_u64().unwrap() > 0, "{s}");
        }
    }
    let text = String::from_utf8(admin(&proxy, &["who"]).stdout).unwrap();
    assert!(
        text.contains(ALICE) && text.contains("3 sessions"),
        "{text}"
    );
    assert!(!text.contains(&alice_token) && !text.contains(&bob_token));

    // kick USER ends alice's session only.
    let out = admin(&proxy, &["kick", ALICE]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 sessions ended",
        "{out:?}"
    );
    let (bye, _) = line_within(&mut alice, Duration::from_secs(1));
    let bye = bye.expect("BYE");
    assert!(
        bye.starts_with("* BYE ") && bye.contains("administrator"),
        "{bye}"
    );
    proxy.wait_log("result=\"kicked\"");
    // kick --ip ends the SMTP session from that address only.
    let out = admin(&proxy, &["kick", "--ip", "127.0.0.43"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 sessions ended",
        "{out:?}"
    );
    let (reply, _) = line_within(&mut bob_smtp, Duration::from_secs(1));
    assert!(reply.expect("421").starts_with("421 4.7.0 "));
    imap_still_works(&mut bob);
    let left = who(&proxy);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["user"], BOB);
    // kick --sub ends bob's last session.
    let sub = left[0]["sub"].as_str().unwrap().to_string();
    let out = admin(&proxy, &["kick", "--sub", &sub]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 sessions ended"
    );
    assert!(who(&proxy).is_empty());

    // Another user cannot talk on the socket.
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(format!(
            "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?})",
            socket.display().to_string()
        )));
    assert!(
        !out.status.success(),
        "nobody connected to the control socket"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionError"),
        "{out:?}"
    );
}

#[test]
fn who_without_a_control_socket_says_so() {
    let peers = peers_read();
    let proxy = Proxy::start(&peers, &ProxyOptions::new(&peers));
    let out = admin(&proxy, &["who"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no `server.control-socket` is configured"),
        "{err}"
    );
}
