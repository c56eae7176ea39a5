//! Re-validation at scale (issue 13): 2,000 open IMAP sessions sharing 200
//! tokens, re-validated every 10 s, against the real provider and Dovecot.
//! The provider receives one request per distinct token per interval
//! (counted at the provider), spread over the interval, and logins during
//! re-validation are not slowed (p99 compared with before).
//!
//! Sizes: `SCALE_SESSIONS` (default 2000), `SCALE_TOKENS` (default 200).

mod common;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SCOPE: &str = "openid email profile";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Conn = BufReader<TcpStream>;

async fn line(s: &mut Conn) -> std::io::Result<String> {
    let mut l = String::new();
    let n = tokio::time::timeout(Duration::from_secs(60), s.read_line(&mut l))
        .await
        .map_err(|_| std::io::Error::other("no answer within 60 s"))??;
    if n == 0 {
        return Err(std::io::Error::other("closed"));
    }
    Ok(l.trim_end().to_string())
}

/// Connects to the plaintext listener and logs in; returns the session.
async fn login(port: u16, user: &str, token: &str) -> std::io::Result<Conn> {
    let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await?);
    let greeting = line(&mut s).await?;
    if !greeting.starts_with("* OK") {
        return Err(std::io::Error::other(greeting));
    }
    let ir = oauthbearer(Some(user), token);
    s.get_mut()
        .write_all(format!("a AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes())
        .await?;
    loop {
        let l = line(&mut s).await?;
        if l.starts_with("a OK") {
            return Ok(s);
        }
        if l.starts_with("a ") || l.starts_with("+ ") {
            return Err(std::io::Error::other(l));
        }
    }
}

/// The p99 of `n` sequential logins (each logs out at once).
async fn login_p99(port: u16, user: &str, token: &str, n: usize) -> Duration {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = login(port, user, token).await.expect("probe login");
        took.push(t.elapsed());
        let _ = s.get_mut().write_all(b"z LOGOUT\r\n").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    took.sort();
    took[(n * 99 / 100).min(n - 1)]
}

fn userinfo_count(peers: &Peers) -> u64 {
    provider_stats(peers)["userinfo"]
        .as_u64()
        .expect("userinfo count")
}

#[test]
fn two_thousand_sessions_on_two_hundred_tokens_cost_two_hundred_requests_per_interval() {
    raise_fd_limit();
    let sessions = env_usize("SCALE_SESSIONS", 2000);
    let tokens_n = env_usize("SCALE_TOKENS", 200);
    let peers = peers_exclusive();
    let mut opts = ProxyOptions::new(&peers);
    opts.log_level = "warn";
    opts.limits = "max-connections = 100000\nmax-connections-per-ip = 100000\n".into();
    opts.directory = format!(
        "{}session.revalidate = \"10s\"\n",
        userinfo_directory(&peers).replace("timeout = \"5s\"", "timeout = \"30s\"")
    );
    opts.connect_timeout = "60s";
    let proxy = Proxy::start(&peers, &opts);
    let port = proxy.port("imap-plain");
    let users = [("alice", "alice@example.com"), ("bob", "bob@example.com")];
    let tokens: Vec<(String, String)> = (0..tokens_n)
        .map(|i| {
            let (sub, email) = users[i % 2];
            (email.to_string(), mint_token(&peers, sub, SCOPE, 3600))
        })
        .collect();
    // Logins measured before and during re-validation, with a token of
    // their own.
    let probe = (
        users[1].1.to_string(),
        mint_token(&peers, "bob", SCOPE, 3600),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let before = login_p99(port, &probe.0, &probe.1, 40).await;
        // Open the sessions, 64 logins at a time.
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut opening = Vec::new();
        for i in 0..sessions {
            let (user, token) = tokens[i % tokens_n].clone();
            let gate = gate.clone();
            opening.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("gate");
                login(port, &user, &token).await
            }));
        }
        let mut held = Vec::new();
        for o in opening {
            held.push(o.await.expect("task").expect("a session logs in"));
        }
        eprintln!("{} sessions open", held.len());
        // Measure two intervals: provider requests per second, and logins.
        let start = userinfo_count(&peers);
        let mut per_second = Vec::new();
        let mut last = start;
        let t0 = Instant::now();
        let prober = tokio::spawn({
            let probe = probe.clone();
            async move { login_p99(port, &probe.0, &probe.1, 60).await }
        });
        for s in 1..=20u32 {
            tokio::time::sleep_until((t0 + Duration::from_secs(s as u64)).into()).await;
            let now = userinfo_count(&peers);
            per_second.push(now - last);
            last = now;
        }
        let during = prober.await.expect("prober");
        let probes = 60;
        let total = last - start - probes;
        eprintln!("provider requests per second over two intervals (incl. {probes} probe logins): {per_second:?}");
        eprintln!("re-validation requests in 20 s: {total} (expected {})", 2 * tokens_n);
        eprintln!("login p99 before: {before:?}, during re-validation: {during:?}");
        let expected = 2 * tokens_n as u64;
        assert!(
            total + 10 >= expected && total <= expected + 10,
            "{total} re-validation requests in two intervals, expected {expected}"
        );
        let mean = (total + probes) as f64 / 20.0;
        let peak = *per_second.iter().max().unwrap_or(&0) as f64;
        assert!(peak <= 3.0 * mean + 5.0, "a burst: {per_second:?}");
        assert!(
            during <= before * 3 + Duration::from_millis(100),
            "logins slowed by re-validation: p99 {before:?} -> {during:?}"
        );
        // The sessions are all still there and work.
        let log = proxy.log();
        assert!(!log.contains("re-validation could not reach"), "{log}");
        for s in held.iter_mut().take(20) {
            s.get_mut().write_all(b"n NOOP\r\n").await.expect("write");
            loop {
                let l = line(s).await.expect("NOOP reply");
                if l.starts_with("n ") {
                    assert!(l.starts_with("n OK"), "{l}");
                    break;
                }
            }
        }
    });
}
