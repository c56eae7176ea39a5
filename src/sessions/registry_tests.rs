use super::*;
use crate::sessions::{Grant, How};

fn grant(sub: Option<&str>, sid: Option<&str>) -> Grant {
    let mut g = Grant::passthrough();
    g.how = How::Token;
    g.sub = sub.map(str::to_string);
    g.sid = sid.map(str::to_string);
    g
}

fn new<'a>(user: &'a str, port: u16) -> New<'a> {
    New {
        user,
        protocol: "imap",
        listener: "imaps",
        client: SocketAddr::from(([127, 0, 0, port as u8], port)),
        mechanism: "OAUTHBEARER",
        backend: None,
        begun: None,
    }
}

#[tokio::test]
async fn lists_registered_sessions_and_forgets_them_when_dropped() {
    let r = Arc::new(Registry::default());
    let a = r.register(new("alice", 1), &grant(Some("a"), None));
    let b = r.register(new("bob", 2), &grant(Some("b"), None));
    b.traffic.to_client.store(42, Ordering::Relaxed);
    let all = r.list(&Selector::All);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].user, "bob");
    assert_eq!(all[1].bytes_to_client, 42);
    drop(a);
    let left = r.list(&Selector::All);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].user, "bob");
    drop(b);
    assert!(r.is_empty());
}

#[tokio::test]
async fn ends_only_the_selected_sessions_once() {
    let r = Arc::new(Registry::default());
    let mut a1 = r.register(new("alice", 1), &grant(Some("a"), None));
    let mut a2 = r.register(new("Alice", 2), &grant(Some("a"), None));
    let mut b = r.register(new("bob", 3), &grant(Some("b"), None));
    assert_eq!(r.end(&Selector::User("alice".into()), Reason::Kicked), 2);
    assert_eq!(a1.stop.try_recv().ok(), Some(Reason::Kicked));
    assert_eq!(a2.stop.try_recv().ok(), Some(Reason::Kicked));
    assert!(b.stop.try_recv().is_err());
    // Already told: not counted twice.
    assert_eq!(r.end(&Selector::Sub("a".into()), Reason::Kicked), 0);
    let ip = "127.0.0.3".parse().unwrap();
    assert_eq!(r.end(&Selector::Ip(ip), Reason::Kicked), 1);
}

#[test]
fn a_logout_names_sessions_by_sid_or_else_by_sub() {
    let info = |sub: Option<&str>, sid: Option<&str>| Info {
        id: 1,
        user: "alice".into(),
        protocol: "imap".into(),
        listener: "l".into(),
        client: SocketAddr::from(([127, 0, 0, 1], 1)),
        how: "token".into(),
        mechanism: "OAUTHBEARER".into(),
        backend: None,
        directory: Some("kc".into()),
        credential: None,
        sub: sub.map(str::to_string),
        sid: sid.map(str::to_string),
        expires: None,
        since: 0,
        bytes_to_upstream: 0,
        bytes_to_client: 0,
    };
    let logout = |sub: Option<&str>, sid: Option<&str>| Selector::Logout {
        directory: "kc".into(),
        sub: sub.map(str::to_string),
        sid: sid.map(str::to_string),
    };
    // A token without sid: its sub decides.
    assert!(logout(Some("a"), Some("s1")).matches(&info(Some("a"), None)));
    assert!(!logout(Some("b"), Some("s1")).matches(&info(Some("a"), None)));
    // A token with sid: the logout's sid decides.
    assert!(logout(Some("a"), Some("s1")).matches(&info(Some("a"), Some("s1"))));
    assert!(!logout(Some("a"), Some("s2")).matches(&info(Some("a"), Some("s1"))));
    assert!(logout(None, Some("s1")).matches(&info(Some("a"), Some("s1"))));
    // A logout of sub only ends all its sessions.
    assert!(logout(Some("a"), None).matches(&info(Some("a"), Some("s1"))));
    // Another directory's logout ends nothing here.
    let other = Selector::Logout {
        directory: "other".into(),
        sub: Some("a".into()),
        sid: None,
    };
    assert!(!other.matches(&info(Some("a"), None)));
}

#[tokio::test]
async fn an_end_ordered_during_a_login_ends_its_session_as_it_registers() {
    let r = Arc::new(Registry::default());
    let mut before = new("alice", 1);
    let old = r.mark();
    r.end(&Selector::User("carol".into()), Reason::Kicked);
    before.begun = Some(r.mark());
    // Ordered before this attempt began: not this session's business.
    r.end(&Selector::User("dave".into()), Reason::Kicked);
    let begun = r.mark();
    r.end(&Selector::User("alice".into()), Reason::Revoked);
    r.end(&Selector::Id(1_000), Reason::Kicked);
    let mut during = new("alice", 2);
    during.begun = Some(begun);
    let mut a = r.register(during, &grant(Some("a"), None));
    assert_eq!(a.stop.try_recv().ok(), Some(Reason::Revoked));
    // An attempt that began after the end is not touched by it.
    let mut after = new("alice", 3);
    after.begun = Some(r.mark());
    let mut b = r.register(after, &grant(Some("a"), None));
    assert!(b.stop.try_recv().is_err());
    // Nor one that registers without a mark.
    let mut c = r.register(new("alice", 4), &grant(Some("a"), None));
    assert!(c.stop.try_recv().is_err());
    // Ends ordered before the attempt (carol, dave) do not match alice.
    let mut d = r.register(before, &grant(Some("a"), None));
    assert_eq!(d.stop.try_recv().ok(), Some(Reason::Revoked));
    assert_ne!(old, r.mark());
}

#[tokio::test]
async fn the_recent_ends_are_bounded() {
    let r = Arc::new(Registry::default());
    let begun = r.mark();
    r.end(&Selector::User("alice".into()), Reason::Revoked);
    for i in 0..crate::sessions::recent::KEPT {
        r.end(&Selector::User(format!("user{i}")), Reason::Kicked);
    }
    let mut late = new("alice", 1);
    late.begun = Some(begun);
    let mut a = r.register(late, &grant(Some("a"), None));
    assert!(a.stop.try_recv().is_err(), "the oldest end was forgotten");
}
