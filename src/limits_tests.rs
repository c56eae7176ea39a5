//! Tests of `limits`.
use super::*;
use std::net::Ipv4Addr;

fn limits(total: usize, per_ip: usize) -> Limits {
    Limits {
        max_connections: total,
        max_connections_per_ip: per_ip,
        ..Limits::default()
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

#[test]
fn per_ip_and_total_limits_with_guards() {
    let l = Limiter::new(&limits(3, 2));
    let a1 = l.admit(ip(1)).unwrap();
    let _a2 = l.admit(ip(1)).unwrap();
    assert_eq!(l.admit(ip(1)).err(), Some(Refusal::PerIp));
    let _b1 = l.admit(ip(2)).unwrap();
    assert_eq!(l.admit(ip(3)).err(), Some(Refusal::Total));
    drop(a1);
    assert_eq!(l.open(ip(1)), (2, 1));
    let _c = l.admit(ip(3)).unwrap();
    assert_eq!(l.open(ip(3)), (3, 1));
}

#[test]
fn table_forgets_addresses_without_connections() {
    let l = Limiter::new(&limits(10, 10));
    for n in 0..5 {
        drop(l.admit(ip(n)).unwrap());
    }
    assert!(l.connections().per_ip.is_empty());
    assert_eq!(l.open(ip(0)), (0, 0));
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    let l = Limiter::new(&limits(10, 1));
    let _a = l.admit(ip(7)).unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(l.admit(mapped).err(), Some(Refusal::PerIp));
}

#[test]
fn ipv6_counts_per_64_prefix() {
    let l = Limiter::new(&limits(10, 2));
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    let _a = l.admit(a("2001:db8:1:2::1")).unwrap();
    let _b = l.admit(a("2001:db8:1:2:ffff:ffff:ffff:ffff")).unwrap();
    // A third address of the same /64 is over its limit ...
    assert_eq!(l.admit(a("2001:db8:1:2::3")).err(), Some(Refusal::PerIp));
    // ... another /64 is not.
    let _c = l.admit(a("2001:db8:1:3::1")).expect("another /64");
    assert_eq!(l.open(a("2001:db8:1:2::99")), (3, 2));
    // The failure penalty is shared by the /64 too.
    l.record_failure(a("2001:db8:1:2::1"));
    let first = l.penalty(a("2001:db8:1:2::1"));
    assert!(first > Duration::ZERO);
    l.record_failure(a("2001:db8:1:2::2"));
    assert!(l.penalty(a("2001:db8:1:2::3")) > first);
    assert_eq!(l.penalty(a("2001:db8:1:3::2")), Duration::ZERO);
}

#[test]
fn penalty_grows_caps_and_expires() {
    let p = Penalty::new(Duration::from_secs(2), 100);
    let t0 = Instant::now();
    let d: Vec<u64> = (0..5).map(|_| p.failure(ip(1), t0).as_secs()).collect();
    assert_eq!(d, vec![2, 4, 8, 15, 15]);
    // Another address starts at the base.
    assert_eq!(p.failure(ip(2), t0), Duration::from_secs(2));
    // After the window, back to the base.
    assert_eq!(
        p.failure(ip(1), t0 + PENALTY_WINDOW),
        Duration::from_secs(2)
    );
    p.clear(ip(1));
    assert_eq!(p.failure(ip(1), t0), Duration::from_secs(2));
}

#[test]
fn owed_is_the_last_failures_delay_and_expires() {
    let p = Penalty::new(Duration::from_secs(2), 100);
    let t0 = Instant::now();
    assert_eq!(p.owed(ip(1), t0), Duration::ZERO);
    p.failure(ip(1), t0);
    assert_eq!(p.owed(ip(1), t0), Duration::from_secs(2));
    p.failure(ip(1), t0);
    assert_eq!(p.owed(ip(1), t0), Duration::from_secs(4));
    assert_eq!(p.owed(ip(2), t0), Duration::ZERO);
    assert_eq!(p.owed(ip(1), t0 + PENALTY_WINDOW), Duration::ZERO);
}

#[test]
fn penalty_zero_base_is_always_zero_and_remembers_nothing() {
    let p = Penalty::new(Duration::ZERO, 100);
    for _ in 0..10 {
        assert_eq!(p.failure(ip(1), Instant::now()), Duration::ZERO);
    }
    assert!(p.is_empty());
}

#[test]
fn penalty_memory_is_bounded_under_a_flood_of_addresses() {
    let p = Penalty::new(Duration::from_millis(100), 1000);
    let now = Instant::now();
    for n in 0..5000u32 {
        let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        assert_eq!(p.failure(a, now), Duration::from_millis(100));
    }
    assert_eq!(p.len(), 1000);
    // Once the old entries expire, new addresses are remembered again.
    let later = now + PENALTY_WINDOW + Duration::from_secs(2);
    p.failure(ip(9), later);
    assert_eq!(p.len(), 1);
    assert_eq!(p.failure(ip(9), later), Duration::from_millis(200));
}

#[test]
fn refusal_replies() {
    assert_eq!(
        Refusal::PerIp.reply(Protocol::Imap, "h"),
        "* BYE [UNAVAILABLE] Too many connections from your address, try again later.\r\n"
    );
    assert!(Refusal::Total
        .reply(Protocol::Smtp, "mx.test")
        .starts_with("421 4.7.0 mx.test "));
}
