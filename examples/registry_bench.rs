//! Micro-benchmark of the session registry on the login path: what one
//! session's register + unregister costs with 2,000 other sessions live
//! (the same work every relayed login does), single-threaded and with 4
//! threads contending for the registry; and its worst case since logins
//! look at the ends ordered while they were under way: a full log of
//! recent ends, none of them this session's. No network.
//!
//!     cargo run --release --example registry_bench [ITERATIONS]

use oauthbearer_proxy::sessions::registry::New;
use oauthbearer_proxy::sessions::{Grant, Mark, Reason, Registry, Selector};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

fn new(i: u32, begun: Option<Mark>) -> New<'static> {
    New {
        user: "alice@example.com",
        protocol: "imap",
        listener: "imaps",
        client: SocketAddr::from(([127, 0, 0, 1], (i % 60_000) as u16)),
        mechanism: "OAUTHBEARER",
        backend: None,
        begun,
    }
}

fn per_op(registry: &Arc<Registry>, n: u32, begun: Option<Mark>) -> f64 {
    let grant = Grant::passthrough();
    let t = Instant::now();
    for i in 0..n {
        let r = registry.register(new(i, begun), &grant);
        drop(r);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let registry = Arc::new(Registry::default());
    let grant = Grant::passthrough();
    let live: Vec<_> = (0..2000)
        .map(|i| registry.register(new(i, None), &grant))
        .collect();
    let single = per_op(&registry, n, None);
    println!("register + unregister, 2,000 live, 1 thread:  {single:.0} ns per session");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                let _guard = rt.enter();
                per_op(&registry, n / 4, None)
            })
        })
        .collect();
    let contended: Vec<f64> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let worst = contended.iter().cloned().fold(0.0, f64::max);
    println!(
        "register + unregister, 2,000 live, 4 threads: {worst:.0} ns per session (slowest thread)"
    );
    let begun = registry.mark();
    for i in 0..oauthbearer_proxy::sessions::recent::KEPT {
        registry.end(
            &Selector::User(format!("gone{i}@example.com")),
            Reason::Kicked,
        );
    }
    let looked = per_op(&registry, n, Some(begun));
    println!(
        "register + unregister, 2,000 live, 1 thread, begun before 256 other ends: {looked:.0} ns per session"
    );
    drop(live);
}
