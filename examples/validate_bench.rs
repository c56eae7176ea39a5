//! Micro-benchmark of token validation: warm-cache validations per second
//! and heap allocations per validation (a counting global allocator), plus
//! uncached local JWT validation (HS256 through the whole validator; RS256
//! and ES256 signature checks against a key set, keys made by `openssl`)
//! for comparison. No network.
//!
//!     cargo run --release --example validate_bench [ITERATIONS]

use oauthbearer_proxy::config::{Config, IdentityField};
use oauthbearer_proxy::idp::{Directories, Validator};
use oauthbearer_proxy::secret::Secret;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &str = "benchmark-shared-secret-0123456789abcdef";

fn config(cache: &str) -> Config {
    let text = format!(
        r#"
[listener.imap]
protocol = "imap"
bind = "127.0.0.1:0"
directory = "local"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:143"
login.method = "master-user"
login.username = "proxy"
login.secret = "x"

[directory.local]
type = "oidc"
endpoint.method = "jwt"
issuer = "https://idp.example"
audience = "urn:mail"
required-scope = "email"
algorithms = ["HS256"]
secret = "{SECRET}"
fields.email = "email"
fields.username = "username"
{cache}
"#
    );
    match Config::parse(&text) {
        Ok(c) => c,
        Err(e) => panic!("benchmark configuration: {e}"),
    }
}

fn token() -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = serde_json::json!({
        "iss": "https://idp.example", "aud": "urn:mail", "sub": "alice",
        "exp": now + 3600, "iat": now, "scope": "openid email profile",
        "email": "alice@example.com", "username": "alice",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign the benchmark token")
}

async fn measure(label: &str, dirs: &Directories, token: &Secret, n: u64) {
    // Warm-up (fills the cache when there is one).
    for _ in 0..1000 {
        let (_, r) = dirs.validate(token, IdentityField::Email).await;
        r.expect("the benchmark token validates");
    }
    let allocs = ALLOCATIONS.load(Relaxed);
    let started = Instant::now();
    for _ in 0..n {
        let (_, r) = dirs.validate(token, IdentityField::Email).await;
        std::hint::black_box(r.expect("valid"));
    }
    let took = started.elapsed();
    let allocs = ALLOCATIONS.load(Relaxed) - allocs;
    println!(
        "{label:<32} {:>12.0} validations/s  {:>8.2} µs each  {:>6.2} allocations/validation",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
        allocs as f64 / n as f64
    );
}

/// Uncached RS256 / ES256 verification against a parsed key set.
fn asymmetric(n: u64) {
    use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
    use oauthbearer_proxy::config::JwtSettings;
    use oauthbearer_proxy::idp::{jwks::KeySet, jwt};
    let dir = tempfile::tempdir().expect("tempdir");
    for (alg, args) in [
        (
            Algorithm::RS256,
            ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            Algorithm::ES256,
            ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
    ] {
        let path = dir.path().join("key.pem");
        let ok = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("(openssl unavailable: {alg:?} skipped)");
            continue;
        }
        let pem = std::fs::read(&path).expect("key");
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("signing key");
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some("k".into());
        let doc = serde_json::json!({ "keys": [jwk] });
        let set = KeySet::parse(doc.as_object().expect("object"));
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = serde_json::json!({"iss": "https://idp.example", "aud": "urn:mail",
            "exp": now + 3600, "scope": "email", "email": "alice@example.com"});
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k".into());
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
        let settings = JwtSettings {
            jwks_url: None,
            algorithms: vec![alg],
            secret: None,
            allow_untyped: false,
            introspect: None,
        };
        let expect = jwt::Expect {
            issuer: Some("https://idp.example"),
            audience: Some("urn:mail"),
            leeway_secs: 60,
            required_scope: Some("email"),
        };
        let v = jwt::JwtValidator::new(&settings, &expect, None);
        let allocs = ALLOCATIONS.load(Relaxed);
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(v.verify_static(&token, &set).expect("valid"));
        }
        let took = started.elapsed();
        let allocs = ALLOCATIONS.load(Relaxed) - allocs;
        println!(
            "{:<32} {:>12.0} validations/s  {:>8.2} µs each  {:>6.2} allocations/validation",
            format!("no cache ({alg:?} verify)"),
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / n as f64,
            allocs as f64 / n as f64
        );
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = Secret::new(token());
    runtime.block_on(async {
        for (label, cache, iterations) in [
            ("warm cache (JWT HS256)", "cache.ttl = \"5m\"", n),
            ("no cache (JWT HS256 verify)", "", n / 10),
        ] {
            let config = config(cache);
            let dir = config.directories["local"].clone();
            let validator = Validator::new(dir).expect("validator");
            let dirs = Directories::new(vec![Arc::new(validator)]);
            measure(label, &dirs, &token, iterations.max(1)).await;
            if let Some(v) = dirs.primary() {
                let s = v.stats().snapshot();
                println!(
                    "{:<32} hits {} misses {} provider requests {}",
                    "", s.hits, s.misses, s.provider_requests
                );
            }
        }
    });
    asymmetric((n / 100).max(100));
}
