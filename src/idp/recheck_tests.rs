//! Re-validation of a JWT through the issuer's introspection endpoint.
//! The npm provider the end-to-end tests use refuses to introspect JWT
//! access tokens ("Structured JWT Tokens cannot be introspected"), so the
//! endpoint here is a small loopback HTTP server answering what Keycloak
//! or Authentik answer for a revoked token.

use super::tests_support::{directories, token};
use super::*;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves discovery and introspection on 127.0.0.1; `active` says what
/// introspection answers. Returns the issuer URL.
async fn provider(active: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let iss = issuer.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if request.starts_with("GET /.well-known/openid-configuration") {
                serde_json::json!({"issuer": iss, "introspection_endpoint": format!("{iss}/introspect")})
            } else if request.starts_with("POST /introspect")
                && request.contains("authorization: Basic")
            {
                let active = active.load(Ordering::SeqCst);
                serde_json::json!({"active": active, "iss": iss, "aud": "urn:mail", "username": "alice", "exp": cache::unix_now() + 60})
            } else {
                serde_json::json!({"error": "unexpected request"})
            };
            let body = body.to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    issuer
}

#[tokio::test]
async fn a_revoked_jwt_is_found_out_through_introspection() {
    let active = Arc::new(AtomicBool::new(true));
    let issuer = provider(active.clone()).await;
    let block = format!(
        "[directory.d]\ntype = \"oidc\"\nendpoint.method = \"jwt\"\nissuer = \"{issuer}\"\naudience = \"urn:mail\"\nalgorithms = [\"HS256\"]\nsecret = \"{}\"\nfields.username = \"username\"\nauth.method = \"basic\"\nauth.username = \"mail-proxy\"\nauth.secret = \"s\"\n",
        super::tests_support::SECRET
    );
    let dirs = directories(&block, &["d"]);
    let v = dirs.get(0).unwrap();
    let t = token(&issuer);
    v.recheck(&t).await.expect("active");
    active.store(false, Ordering::SeqCst);
    match v.recheck(&t).await {
        Err(Error::Rejected(_)) => {}
        other => panic!("a revoked JWT re-validated as {other:?}"),
    }
}

#[tokio::test]
async fn without_introspection_credentials_a_jwt_is_rechecked_locally() {
    let issuer = "http://127.0.0.1:1";
    let dirs = directories(&super::tests_support::jwt_block("d", issuer), &["d"]);
    // No provider request is made: the unreachable issuer does not matter.
    dirs.get(0)
        .unwrap()
        .recheck(&token(issuer))
        .await
        .expect("valid");
}
