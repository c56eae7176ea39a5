//! The login plan (health × protocol × failover), passive marks and the
//! active probe, against loopback sockets.

use super::*;
use crate::config::Config;

/// A group of its own: tests run in parallel, and groups with the same
/// upstream, backend names and addresses share their health.
fn group(backends: &str, failover: bool) -> Arc<Group> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("up{}", N.fetch_add(1, Ordering::Relaxed));
    group_named(&name, backends, failover)
}

fn group_named(name: &str, backends: &str, failover: bool) -> Arc<Group> {
    let text = format!(
        r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:143"
tls = "none"
directory = "idp"
upstream = "{name}"

[upstream.{name}]
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
failover = {failover}
backends = {backends}

[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#
    );
    let config = Config::parse(&text).unwrap();
    Group::new(config.upstreams[name].clone(), None).unwrap()
}

const TWO: &str = r#"[ { name = "mail1", address = "127.0.0.1:1" }, { name = "mail2", address = "127.0.0.1:2" } ]"#;

fn key(user: &str) -> RouteKey<'_> {
    RouteKey { user, claim: None }
}

/// A user whose home is backend `home`.
fn user_of(g: &Group, home: usize) -> String {
    (0..)
        .map(|i| format!("user{i}@example.com"))
        .find(|u| hash::pick(&g.config.backends.list, u) == home)
        .unwrap()
}

#[test]
fn healthy_home_first_smtp_may_go_on() {
    let g = group(TWO, false);
    let alice = user_of(&g, 1);
    assert_eq!(g.plan(key(&alice), Protocol::Imap).unwrap(), vec![1]);
    assert_eq!(g.plan(key(&alice), Protocol::Smtp).unwrap(), vec![1, 0]);
}

#[test]
fn a_down_home_is_a_temporary_failure_unless_failover() {
    let g = group(TWO, false);
    let alice = user_of(&g, 0);
    g.mark(&g.members[0], false, "test");
    assert!(!g.members[0].health.is_up());
    for p in [Protocol::Imap, Protocol::Pop3, Protocol::ManageSieve] {
        let e = g.plan(key(&alice), p).unwrap_err();
        assert!(
            matches!(&e, NoBackend::Down { backend, .. } if backend == "mail1"),
            "{e:?}"
        );
    }
    assert_eq!(g.plan(key(&alice), Protocol::Smtp).unwrap(), vec![1]);
    // The other backend's users are unaffected.
    let bob = user_of(&g, 1);
    assert_eq!(g.plan(key(&bob), Protocol::Imap).unwrap(), vec![1]);
    // Back after two passed checks.
    g.checked(0, Ok(()));
    assert!(g.plan(key(&alice), Protocol::Imap).is_err());
    g.checked(0, Ok(()));
    assert_eq!(g.plan(key(&alice), Protocol::Imap).unwrap(), vec![0]);

    let shared = group(TWO, true);
    shared.mark(&shared.members[0], false, "test");
    assert_eq!(shared.plan(key(&alice), Protocol::Imap).unwrap(), vec![1]);
    shared.mark(&shared.members[1], false, "test");
    assert_eq!(
        shared.plan(key(&alice), Protocol::Imap).unwrap(),
        vec![0, 1]
    );
}

#[test]
fn a_single_address_is_never_marked_down() {
    let config = Config::parse(
        r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:143"
tls = "none"
directory = "idp"
upstream = "dovecot"
[upstream.dovecot]
address = "127.0.0.1:1"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#,
    )
    .unwrap();
    let g = Group::new(config.upstreams["dovecot"].clone(), None).unwrap();
    g.mark(&g.members[0], false, "test");
    assert_eq!(g.plan(key("a"), Protocol::Imap).unwrap(), vec![0]);
}

async fn greeter(greeting: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(greeting).await;
        }
    });
    address
}

async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn probe_reads_the_greeting() {
    let ok = greeter(b"* OK ready\r\n").await;
    let busy = greeter(b"* BYE busy\r\n").await;
    let gone = closed_port().await;
    let g = group(
        &format!(
            r#"[ {{ name = "ok", address = "{ok}" }}, {{ name = "busy", address = "{busy}" }}, {{ name = "gone", address = "{gone}" }} ]"#
        ),
        false,
    );
    let t = Duration::from_secs(2);
    let probe = |i: usize| health::probe(&g.members[i].target, Protocol::Imap, t);
    assert_eq!(probe(0).await, Ok(()));
    assert!(probe(1).await.unwrap_err().contains("not a ready greeting"));
    assert!(probe(2).await.is_err());
}

#[tokio::test]
async fn smtp_moves_on_when_a_backend_cannot_be_reached() {
    let ok = greeter(b"220 ready\r\n").await;
    let gone = closed_port().await;
    let g = group(
        &format!(
            r#"[ {{ name = "gone", address = "{gone}" }}, {{ name = "ok", address = "{ok}" }} ]"#
        ),
        false,
    );
    let alice = user_of(&g, 0);
    let plan = g.plan(key(&alice), Protocol::Smtp).unwrap();
    assert_eq!(plan, vec![0, 1]);
    let (result, chosen) = g
        .login(
            &plan,
            |_| true,
            |t| async move { t.connect(None).await.map(|_| ()) },
        )
        .await;
    assert!(result.is_ok());
    assert_eq!(chosen.name, "ok");
    // The failed connect marked the first one down.
    assert!(!g.members[0].health.is_up());
    assert!(g.plan(key(&alice), Protocol::Imap).is_err());
}

use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn metrics_per_backend() {
    let g = group(
        r#"[ { name = "m-a", address = "127.0.0.1:1" }, { name = "m-b", address = "127.0.0.1:2" } ]"#,
        false,
    );
    g.mark(&g.members[1], false, "test");
    let up = &g.config.name;
    let open = metrics::global().open_session(up, "m-a");
    metrics::global().login(up, "m-a", true);
    let text = crate::metrics::global().render();
    for line in [
        format!("oauthbearer_proxy_backend_up{{upstream=\"{up}\",backend=\"m-a\"}} 1"),
        format!("oauthbearer_proxy_backend_up{{upstream=\"{up}\",backend=\"m-b\"}} 0"),
        format!("oauthbearer_proxy_backend_sessions_open{{upstream=\"{up}\",backend=\"m-a\"}} 1"),
        format!("oauthbearer_proxy_backend_logins_total{{upstream=\"{up}\",backend=\"m-a\",result=\"ok\"}} 1"),
    ] {
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
    drop(open);
    let text = crate::metrics::global().render();
    assert!(text.contains(&format!(
        "oauthbearer_proxy_backend_sessions_open{{upstream=\"{up}\",backend=\"m-a\"}} 0"
    )));
}

#[test]
fn health_outlives_a_reload_and_the_newest_group_checks() {
    let before = group_named("reloaded", TWO, false);
    before.mark(&before.members[1], false, "test");
    let after = group_named("reloaded", TWO, false);
    assert!(!after.members[1].health.is_up());
    assert!(after.members[0].health.is_up());
    let checker = |g: &Group, i: usize| g.members[i].health.checker.load(Ordering::Relaxed);
    assert_eq!(checker(&after, 1), after.generation);
    assert_ne!(checker(&before, 1), before.generation);
    // Another address is another backend.
    let moved = r#"[ { name = "mail1", address = "127.0.0.1:1" }, { name = "mail2", address = "127.0.0.1:3" } ]"#;
    assert!(group_named("reloaded", moved, false).members[1]
        .health
        .is_up());
}
