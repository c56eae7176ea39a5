//! Load that the proxy holds (issue 6), against real Dovecot and the real
//! OpenID provider on loopback:
//!
//! - N concurrent TLS sessions: half log in and stay idle, half hammer
//!   logins with valid and invalid tokens. Zero unexpected failures; the
//!   proxy's memory per session is reported; its file descriptors and
//!   threads return to the baseline once the clients leave.
//! - Slowloris: many clients sending one byte a second before login do not
//!   stop legitimate logins.
//!
//! Sizes are bounded for CI (`LOAD_SESSIONS`, default 1000;
//! `SLOWLORIS_CLIENTS`, default 1000). The larger documented run:
//! `LOAD_SESSIONS=5000 SLOWLORIS_CLIENTS=3000 cargo test --release --test load_e2e -- --nocapture --test-threads 1`

mod common;
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SCOPE: &str = "openid email profile";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn connector(ca: &str) -> TlsConnector {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Tls = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

async fn open(port: u16, tls: &TlsConnector) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await?;
    let mut s = BufReader::new(stream);
    let greeting = line(&mut s).await?;
    if !greeting.starts_with("* OK") {
        return Err(std::io::Error::other(format!("greeting: {greeting}")));
    }
    Ok(s)
}

async fn line(s: &mut Tls) -> std::io::Result<String> {
    let mut l = String::new();
    let n = tokio::time::timeout(Duration::from_secs(120), s.read_line(&mut l))
        .await
        .map_err(|_| std::io::Error::other("no answer within 120 s"))??;
    if n == 0 {
        return Err(std::io::Error::other("closed"));
    }
    Ok(l.trim_end().to_string())
}

/// Logs in; `Ok(true)` on OK, `Ok(false)` on AUTHENTICATIONFAILED.
async fn login(s: &mut Tls, user: &str, token: &str) -> std::io::Result<bool> {
    s.get_mut()
        .write_all(
            format!(
                "a AUTHENTICATE OAUTHBEARER {}\r\n",
                oauthbearer(Some(user), token)
            )
            .as_bytes(),
        )
        .await?;
    loop {
        let l = line(s).await?;
        if l.starts_with("+ ") {
            s.get_mut().write_all(b"AQ==\r\n").await?;
        } else if l.starts_with("a OK") {
            return Ok(true);
        } else if l.starts_with("a NO [AUTHENTICATIONFAILED]") {
            return Ok(false);
        } else if l.starts_with("a ") {
            return Err(std::io::Error::other(l));
        }
    }
}

async fn command(s: &mut Tls, tag: &str, cmd: &str) -> std::io::Result<String> {
    s.get_mut()
        .write_all(format!("{tag} {cmd}\r\n").as_bytes())
        .await?;
    loop {
        let l = line(s).await?;
        if l.starts_with(&format!("{tag} ")) {
            return Ok(l);
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    refused_as_expected: AtomicUsize,
    unexpected: AtomicUsize,
}

#[test]
fn concurrent_tls_sessions_half_idle_half_hammering_logins() {
    raise_fd_limit();
    let n = env_usize("LOAD_SESSIONS", 1000);
    let rounds = env_usize("LOAD_ROUNDS", 3);
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.log_level = "warn";
    opts.limits = "max-connections = 100000\nmax-connections-per-ip = 100000\n".into();
    // Generous peer timeouts: on a loaded 2-core machine the provider and
    // Dovecot answer slowly, which is not what this test is about.
    opts.directory = userinfo_directory(&peers).replace("timeout = \"5s\"", "timeout = \"60s\"");
    opts.connect_timeout = "60s";
    let proxy = Proxy::start(&peers, &opts);
    let port = proxy.port("imaps");
    let users = [("alice", "alice@example.com"), ("bob", "bob@example.com")];
    let tokens: Vec<(String, String)> = users
        .iter()
        .map(|(sub, email)| (email.to_string(), mint_token(&peers, sub, SCOPE, 600)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (fds0, threads0, rss0) = (proxy.fds(), proxy.threads(), proxy.rss_kib());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tls = connector(&peers.ca());
    let counts = Arc::new(Counts::default());
    let idle_n = n / 2;
    let hammer_n = n - idle_n;
    let started = Instant::now();
    let (held_rss, held_fds, errors) = rt.block_on(async {
        // Half: log in and stay idle until told to leave.
        let (leave_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let logged_in = Arc::new(AtomicUsize::new(0));
        let mut idle = Vec::new();
        for i in 0..idle_n {
            let (tls, tokens, counts, logged_in) = (
                tls.clone(),
                tokens.clone(),
                counts.clone(),
                logged_in.clone(),
            );
            let mut leave = leave_tx.subscribe();
            idle.push(tokio::spawn(async move {
                let (user, token) = &tokens[i % tokens.len()];
                let r: std::io::Result<()> = async {
                    let mut s = open(port, &tls).await?;
                    if !login(&mut s, user, token).await? {
                        return Err(std::io::Error::other("valid token refused"));
                    }
                    counts.ok.fetch_add(1, Ordering::SeqCst);
                    logged_in.fetch_add(1, Ordering::SeqCst);
                    let _ = leave.recv().await;
                    let r = command(&mut s, "z", "LOGOUT").await?;
                    if !r.starts_with("z OK") {
                        return Err(std::io::Error::other(r));
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = r {
                    counts.unexpected.fetch_add(1, Ordering::SeqCst);
                    Some(format!("idle {i}: {e}"))
                } else {
                    None
                }
            }));
        }
        // The other half: connect, log in (valid or invalid), SELECT or
        // not, log out; `rounds` times each.
        let mut hammer = Vec::new();
        for i in 0..hammer_n {
            let (tls, tokens, counts) = (tls.clone(), tokens.clone(), counts.clone());
            hammer.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                for round in 0..rounds {
                    let valid = (i + round) % 2 == 0;
                    let (user, good) = &tokens[(i + round) % tokens.len()];
                    let token = if valid {
                        good.clone()
                    } else {
                        format!("invalid-{i}-{round}")
                    };
                    let r: std::io::Result<()> = async {
                        let mut s = open(port, &tls).await?;
                        let ok = login(&mut s, user, &token).await?;
                        if ok != valid {
                            return Err(std::io::Error::other(format!(
                                "valid={valid} got ok={ok}"
                            )));
                        }
                        if ok {
                            let sel = command(&mut s, "b", "SELECT INBOX").await?;
                            if !sel.starts_with("b OK") {
                                return Err(std::io::Error::other(sel));
                            }
                            counts.ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            counts.refused_as_expected.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = command(&mut s, "z", "LOGOUT").await?;
                        Ok(())
                    }
                    .await;
                    if let Err(e) = r {
                        counts.unexpected.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("hammer {i}/{round}: {e}"));
                    }
                }
                errors
            }));
        }
        let mut errors = Vec::new();
        for h in hammer {
            errors.extend(h.await.expect("hammer task"));
        }
        // Wait (bounded) for every idle session to be logged in.
        let deadline = Instant::now() + Duration::from_secs(120);
        while logged_in.load(Ordering::SeqCst) + counts.unexpected.load(Ordering::SeqCst)
            < idle_n + errors.len()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = (proxy.rss_kib(), proxy.fds());
        let _ = leave_tx.send(());
        for h in idle {
            if let Some(e) = h.await.expect("idle task") {
                errors.push(e);
            }
        }
        (held.0, held.1, errors)
    });
    let elapsed = started.elapsed();
    drop(rt);
    // Up to 32 idle keep-alive connections to the provider may stay pooled
    // (idp::http::POOL_MAX_IDLE).
    let fds_after = proxy.wait_fds_at_most(fds0 + 34);
    let threads_after = proxy.threads();
    let per_session = (held_rss.saturating_sub(rss0)) as f64 / idle_n.max(1) as f64;
    eprintln!(
        "load: {n} sessions ({idle_n} idle logged in, {hammer_n} x {rounds} logins) in {:.1}s; \
         ok {}, refused as expected {}, unexpected {}; \
         proxy RSS {rss0} KiB -> {held_rss} KiB with {idle_n} idle sessions ({per_session:.1} KiB each); \
         fds {fds0} -> {held_fds} -> {fds_after}; threads {threads0} -> {threads_after}",
        elapsed.as_secs_f64(),
        counts.ok.load(Ordering::SeqCst),
        counts.refused_as_expected.load(Ordering::SeqCst),
        counts.unexpected.load(Ordering::SeqCst),
    );
    assert!(
        errors.is_empty(),
        "{} unexpected failures, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert_eq!(
        counts.ok.load(Ordering::SeqCst),
        idle_n + hammer_n * rounds - counts.refused_as_expected.load(Ordering::SeqCst)
    );
    assert!(held_fds >= fds0 + idle_n, "the idle sessions were held");
    assert!(fds_after <= fds0 + 34, "fds {fds0} -> {fds_after}");
    assert!(
        threads_after <= threads0.max(4) + 2,
        "threads {threads0} -> {threads_after}"
    );
    // Bounded memory: well under 200 KiB of proxy memory per idle session.
    assert!(per_session < 200.0, "{per_session} KiB per session");
}

#[test]
fn slowloris_does_not_stop_legitimate_logins() {
    raise_fd_limit();
    let slow_n = env_usize("SLOWLORIS_CLIENTS", 1000);
    let seconds = env_usize("SLOWLORIS_SECONDS", 5);
    let peers = peers_read();
    let mut opts = ProxyOptions::new(&peers);
    opts.log_level = "warn";
    opts.directory = userinfo_directory(&peers).replace("timeout = \"5s\"", "timeout = \"60s\"");
    opts.connect_timeout = "60s";
    let proxy = Proxy::start(&peers, &opts);
    let plain = proxy.port("imap-plain");
    let token = mint_token(&peers, "alice", SCOPE, 600);
    let base_fds = proxy.fds();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tls = connector(&peers.ca());
    // Slow clients from many addresses (127.0.1.x), 50 per address (the
    // default per-IP limit), each sending one byte a second and never a
    // whole line.
    let per_ip = 50;
    let (connected, refused, logins) = rt.block_on(async {
        let stop = Arc::new(tokio::sync::Notify::new());
        let connected = Arc::new(AtomicUsize::new(0));
        let mut slow = Vec::new();
        for i in 0..slow_n {
            let (stop, connected) = (stop.clone(), connected.clone());
            let source = format!("127.0.1.{}", 1 + i / per_ip);
            slow.push(tokio::spawn(async move {
                let sock = tokio::net::TcpSocket::new_v4().ok()?;
                sock.bind(format!("{source}:0").parse().ok()?).ok()?;
                let mut tcp = sock
                    .connect(format!("127.0.0.1:{plain}").parse().ok()?)
                    .await
                    .ok()?;
                connected.fetch_add(1, Ordering::SeqCst);
                loop {
                    tokio::select! {
                        _ = stop.notified() => return Some(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {
                            if tcp.write_all(b"a").await.is_err() {
                                return Some(());
                            }
                        }
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while connected.load(Ordering::SeqCst) < slow_n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // One address over its limit: refused with BYE, others unaffected.
        let mut refused = 0;
        for _ in 0..3 {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind("127.0.1.1:0".parse().unwrap()).expect("bind");
            if let Ok(tcp) = sock
                .connect(format!("127.0.0.1:{plain}").parse().unwrap())
                .await
            {
                let mut r = tokio::io::BufReader::new(tcp);
                let mut l = String::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut l)).await;
                if l.starts_with("* BYE [UNAVAILABLE]") {
                    refused += 1;
                }
            }
        }
        // Legitimate TLS logins from 127.0.0.1 while the slow ones drip.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut logins = Vec::new();
        let end = Instant::now() + Duration::from_secs(seconds as u64);
        while Instant::now() < end {
            let t = Instant::now();
            let r = async {
                let mut s = open(proxy.port("imaps"), &tls).await?;
                let ok = login(&mut s, "alice@example.com", &token).await?;
                let _ = command(&mut s, "z", "LOGOUT").await;
                Ok::<bool, std::io::Error>(ok)
            }
            .await;
            logins.push((r.map_err(|e| e.to_string()), t.elapsed()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.notify_waiters();
        for s in slow {
            let _ = s.await;
        }
        (connected.load(Ordering::SeqCst), refused, logins)
    });
    drop(rt);
    let worst = logins.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "slowloris: {connected} slow clients held, {refused}/3 over-limit refused; {} logins, worst {:?}",
        logins.len(),
        worst
    );
    assert_eq!(connected, slow_n);
    assert_eq!(refused, 3, "connections over the per-IP limit get * BYE");
    assert!(logins.len() >= 3);
    for (r, d) in &logins {
        assert_eq!(r.as_ref().ok(), Some(&true), "{r:?}");
        assert!(*d < Duration::from_secs(10), "a login took {d:?}");
    }
    let fds = proxy.wait_fds_at_most(base_fds + 34);
    assert!(fds <= base_fds + 34, "fds {base_fds} -> {fds}");
}
