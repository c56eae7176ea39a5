//! The benchmark's load generator (see `bench/run.sh` and docs/benchmarks.md).
//!
//! ```text
//! loadgen login --addr 127.0.0.1:993 --tls --ca ca.pem --mech plain --user U --secret-file F \
//!               --concurrency 16 --duration 5 [--warmup 1]
//! loadgen fetch --addr ... --concurrency 4 --duration 5
//! loadgen idle  --addr ... --sessions 10000 [--concurrency 64]
//! loadgen login --protocol pop3|managesieve --addr ... (login and idle only)
//! ```
//!
//! Every mode prints one line of JSON on stdout.
//! - `login`: each worker loops: connect, TLS handshake (a full one: no
//!   resumption), greeting, `AUTHENTICATE` with an initial response, `NOOP`,
//!   `LOGOUT`, then waits for the server to close. Latency covers all of it.
//!   With `--protocol pop3`: the `+OK` greeting, `AUTH MECH <ir>`, `NOOP`,
//!   `QUIT`; `--protocol managesieve`: the capability greeting,
//!   `AUTHENTICATE "MECH" "<ir>"`, `NOOP`, `LOGOUT` (see `loadgen/dialect.rs`).
//! - `fetch`: each worker logs in once, selects INBOX and repeats
//!   `FETCH 1:* BODY.PEEK[]` until the duration is over (at least once);
//!   reports the bytes received (after TLS) per second.
//! - `idle`: opens `--sessions` logged-in sessions (`NOOP` answered), prints
//!   `{"opened":N,...}`, holds them until a line or EOF arrives on stdin,
//!   then closes them and prints a second line.

#[path = "loadgen/dialect.rs"]
mod dialect;

use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use dialect::Protocol;
use oauthbearer_proxy::stream::MaybeTls;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Stream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// host:port of the server under test.
    #[arg(long)]
    addr: SocketAddr,
    /// The protocol spoken.
    #[arg(long, value_enum, default_value = "imap")]
    protocol: Protocol,
    /// Implicit TLS (IMAPS, POP3S, ManageSieve over TLS).
    #[arg(long)]
    tls: bool,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    ca: Option<String>,
    #[arg(long, value_enum, default_value = "plain")]
    mech: Mech,
    /// Login (PLAIN: the user; OAUTHBEARER: the authorization identity).
    #[arg(long)]
    user: String,
    /// PLAIN: the authentication identity (a master user); default: `--user`.
    #[arg(long)]
    authcid: Option<String>,
    /// File holding the password (PLAIN) or the access token (OAUTHBEARER).
    #[arg(long)]
    secret_file: String,
    /// Per-operation timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mech {
    Plain,
    Oauthbearer,
}

#[derive(Subcommand)]
enum Mode {
    Login {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
    },
    Fetch {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        sessions: usize,
        /// Logins in flight while opening the sessions.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

struct Ctx {
    addr: SocketAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    protocol: Protocol,
    auth_line: Vec<u8>,
    timeout: Duration,
}

impl Ctx {
    fn new(t: &Target) -> Result<Ctx, String> {
        let secret = std::fs::read_to_string(&t.secret_file)
            .map_err(|e| format!("{}: {e}", t.secret_file))?
            .trim()
            .to_string();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let auth_line = match t.mech {
            Mech::Plain => {
                let msg = match &t.authcid {
                    Some(a) => format!("{}\0{a}\0{secret}", t.user),
                    None => format!("\0{}\0{secret}", t.user),
                };
                t.protocol.auth_line("PLAIN", &b64(msg.as_bytes()))
            }
            Mech::Oauthbearer => {
                let msg = format!(
                    "n,a={},\x01host=localhost\x01port={}\x01auth=Bearer {secret}\x01\x01",
                    t.user,
                    t.addr.port()
                );
                t.protocol.auth_line("OAUTHBEARER", &b64(msg.as_bytes()))
            }
        };
        let tls = if t.tls {
            let ca = t.ca.as_deref().ok_or("--tls needs --ca")?;
            Some((
                tokio_rustls::TlsConnector::from(client_config(ca)?),
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            ))
        } else {
            None
        };
        Ok(Ctx {
            addr: t.addr,
            protocol: t.protocol,
            tls,
            auth_line: auth_line.into_bytes(),
            timeout: Duration::from_secs(t.timeout),
        })
    }
}

fn client_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(c.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| e.to_string())?;
    }
    // Thunderbird's (NSS's) TLS 1.3 preference: AES-128-GCM first, then
    // ChaCha20-Poly1305, then AES-256-GCM. Every contender honours the
    // client's order (OpenSSL's, Dovecot's and rustls's default).
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    {
        use rustls::crypto::aws_lc_rs::cipher_suite as cs;
        let first = [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
        ];
        provider.cipher_suites.retain(|s| !first.contains(s));
        provider.cipher_suites.splice(0..0, first);
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every login pays a full handshake, as a fresh client would.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// An IMAP client connection with a read buffer.
struct Conn {
    s: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes received (after TLS).
    received: u64,
    protocol: Protocol,
}

impl Conn {
    async fn connect(ctx: &Ctx) -> io::Result<Conn> {
        let tcp = TcpStream::connect(ctx.addr).await?;
        tcp.set_nodelay(true)?;
        let s = match &ctx.tls {
            Some((connector, name)) => {
                MaybeTls::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
            }
            None => MaybeTls::Plain(tcp),
        };
        Ok(Conn {
            s,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            received: 0,
            protocol: ctx.protocol,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.s.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.received += n as u64;
        self.end += n;
        Ok(())
    }

    /// The next line (without CRLF) as an owned range of the buffer.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        let mut scanned = self.start;
        loop {
            if let Some(i) = self.buf[scanned..self.end].iter().position(|&b| b == b'\n') {
                let nl = scanned + i;
                let line = (
                    self.start,
                    if nl > self.start && self.buf[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    },
                );
                self.start = nl + 1;
                return Ok(line);
            }
            let offset = self.end - self.start;
            self.fill().await?;
            // fill() may have moved the unread bytes to the front.
            scanned = self.start + offset;
        }
    }

    async fn skip(&mut self, mut n: usize) -> io::Result<()> {
        loop {
            let have = self.end - self.start;
            if have >= n {
                self.start += n;
                return Ok(());
            }
            n -= have;
            self.start = self.end;
            self.fill().await?;
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes).await?;
        self.s.flush().await
    }

    /// Reads lines (skipping literals) up to the one tagged `tag`; returns
    /// whether it was `OK`. A continuation request is answered with `answer`.
    async fn tagged(&mut self, tag: &[u8], answer: &[u8]) -> io::Result<bool> {
        loop {
            let (a, b) = self.line().await?;
            let line = &self.buf[a..b];
            if line.starts_with(tag) && line.get(tag.len()) == Some(&b' ') {
                let ok = line[tag.len() + 1..].starts_with(b"OK");
                if !ok {
                    eprintln!(
                        "loadgen: {}",
                        String::from_utf8_lossy(line)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    );
                }
                return Ok(ok);
            }
            if line.starts_with(b"+") {
                self.send(answer).await?;
                continue;
            }
            if let Some(n) = literal(line) {
                self.skip(n).await?;
            }
        }
    }

    async fn login(ctx: &Ctx) -> io::Result<Conn> {
        let mut c = Conn::connect(ctx).await?;
        c.greeting(ctx.protocol).await?;
        c.authenticate(ctx.protocol, &ctx.auth_line).await?;
        Ok(c)
    }

    async fn logout(mut self) -> io::Result<()> {
        self.say_goodbye(self.protocol).await?;
        // Wait for the server to close, so TIME_WAIT stays on its side.
        loop {
            match self.fill().await {
                Ok(()) => self.start = self.end,
                Err(_) => return Ok(()),
            }
        }
    }
}

/// `{n}` at the end of a line: the size of the literal that follows.
fn literal(line: &[u8]) -> Option<usize> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|&b| b == b'{')?;
    let digits = rest[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&rest[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

async fn one_login(ctx: &Ctx) -> io::Result<()> {
    let c = tokio::time::timeout(ctx.timeout, Conn::login(ctx))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    tokio::time::timeout(ctx.timeout, c.logout())
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

static ERRORS_SHOWN: AtomicU64 = AtomicU64::new(0);

fn report_error(e: &io::Error) {
    if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("loadgen: {e}");
    }
}

async fn login_mode(ctx: Arc<Ctx>, concurrency: usize, duration: f64, warmup: f64) -> String {
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        let errors = errors.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                match one_login(&ctx).await {
                    Ok(()) => {
                        let done = Instant::now();
                        if start >= measure_from && done <= end {
                            lat.push((done - start).as_micros() as u32);
                        }
                    }
                    Err(e) => {
                        if start >= measure_from {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        report_error(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort_unstable();
    let n = all.len();
    serde_json::json!({
        "mode": "login",
        "concurrency": concurrency,
        "duration": duration,
        "logins": n,
        "errors": errors.load(Ordering::Relaxed),
        "logins_per_s": n as f64 / duration,
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "mean_ms": if n > 0 { all.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0 } else { 0.0 },
    })
    .to_string()
}

async fn fetch_mode(ctx: Arc<Ctx>, concurrency: usize, duration: f64) -> String {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(duration);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        workers.push(tokio::spawn(async move {
            let mut c = Conn::login(&ctx).await?;
            c.send(b"s SELECT INBOX\r\n").await?;
            if !c.tagged(b"s", b"*\r\n").await? {
                return Err(io::Error::other("SELECT failed"));
            }
            let start_bytes = c.received;
            let mut passes = 0u64;
            loop {
                c.send(b"f FETCH 1:* BODY.PEEK[]\r\n").await?;
                if !c.tagged(b"f", b"*\r\n").await? {
                    return Err(io::Error::other("FETCH failed"));
                }
                passes += 1;
                if Instant::now() >= end {
                    break;
                }
            }
            let bytes = c.received - start_bytes;
            let _ = c.logout().await;
            Ok::<_, io::Error>((bytes, passes, Instant::now()))
        }));
    }
    let mut bytes = 0;
    let mut passes = 0;
    let mut errors = 0;
    let mut last = t0;
    for w in workers {
        match w.await.expect("worker") {
            Ok((b, p, done)) => {
                bytes += b;
                passes += p;
                last = last.max(done);
            }
            Err(e) => {
                report_error(&e);
                errors += 1;
            }
        }
    }
    let secs = (last - t0).as_secs_f64().max(1e-9);
    serde_json::json!({
        "mode": "fetch",
        "concurrency": concurrency,
        "bytes": bytes,
        "passes": passes,
        "seconds": secs,
        "errors": errors,
        "mb_per_s": bytes as f64 / secs / 1e6,
    })
    .to_string()
}

async fn idle_mode(ctx: Arc<Ctx>, sessions: usize, concurrency: usize) {
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let ctx = ctx.clone();
        let next = next.clone();
        let errors = errors.clone();
        workers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < sessions as u64 {
                match tokio::time::timeout(ctx.timeout, Conn::login(&ctx)).await {
                    Ok(Ok(mut c)) => {
                        // Keep the session, not the 64 KiB read buffer.
                        c.buf = Vec::new();
                        c.start = 0;
                        c.end = 0;
                        held.push(c);
                    }
                    Ok(Err(e)) => {
                        report_error(&e);
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        report_error(&io::ErrorKind::TimedOut.into());
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            held
        }));
    }
    let mut held = Vec::new();
    for w in workers {
        held.extend(w.await.expect("worker"));
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "idle",
            "opened": held.len(),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": t0.elapsed().as_secs_f64(),
        })
    );
    // Hold until told (a line or EOF on stdin).
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    let n = held.len();
    drop(held);
    println!("{}", serde_json::json!({"mode": "idle", "closed": n}));
}

fn main() {
    let cli = Cli::parse();
    // Logins (and the idle sessions) run on one thread: the client's share
    // of the machine's CPUs stays small and free of cross-thread wake-ups,
    // leaving the rest to the servers measured. The relay, where the
    // client decrypts up to GB/s, uses every CPU.
    let rt = match cli.mode {
        Mode::Fetch { .. } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("runtime");
    rt.block_on(async {
        let fail = |e: String| -> ! {
            eprintln!("loadgen: {e}");
            std::process::exit(2)
        };
        match cli.mode {
            Mode::Login {
                target,
                concurrency,
                duration,
                warmup,
            } => {
                let ctx = Arc::new(Ctx::new(&target).unwrap_or_else(|e| fail(e)));
                println!("{}", login_mode(ctx, concurrency, duration, warmup).await);
            }
            Mode::Fetch {
                target,
                concurrency,
                duration,
            } => {
                if target.protocol != Protocol::Imap {
                    fail("fetch speaks IMAP only".to_string());
                }
                let ctx = Arc::new(Ctx::new(&target).unwrap_or_else(|e| fail(e)));
                println!("{}", fetch_mode(ctx, concurrency, duration).await);
            }
            Mode::Idle {
                target,
                sessions,
                concurrency,
            } => {
                let ctx = Arc::new(Ctx::new(&target).unwrap_or_else(|e| fail(e)));
                idle_mode(ctx, sessions, concurrency).await;
            }
        }
    });
}
