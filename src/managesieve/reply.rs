//! ManageSieve replies (RFC 5804 §1.3, §1.7): the capability list this
//! proxy offers before login and the one place where a login failure
//! becomes a response.

use super::syntax::server_string;
use crate::config::TlsMode;
use crate::gateway::{Failure, Service};
use crate::upstream::managesieve::Capabilities;

pub const VERSION: &str = "1.0";

/// What a connection is offered, from the listener and the TLS state.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// Authentication may happen now (after TLS, or on `tls = "none"`).
    pub auth: bool,
    /// `PLAIN` too (password passthrough or password tokens).
    pub passwords: bool,
    /// `STARTTLS` may be used now.
    pub starttls: bool,
}

impl Offer {
    pub fn of(svc: &Service, tls: bool) -> Self {
        Self {
            auth: crate::login::auth_allowed(svc, tls),
            passwords: svc.listener.accepts_passwords(),
            starttls: svc.listener.tls == TlsMode::StartTls && !tls,
        }
    }
}

/// The capability lines (§1.7), each with CRLF: the proxy's own
/// `IMPLEMENTATION`, `SASL`, `STARTTLS` and `VERSION`, and the upstream's
/// `SIEVE` (with `NOTIFY`, `MAXREDIRECTS`). Before TLS on a STARTTLS
/// listener `SASL` is empty: no mechanism may be used yet.
pub fn capabilities(offer: Offer, upstream: &Capabilities) -> String {
    let mut sasl = String::new();
    if offer.auth {
        sasl.push_str("OAUTHBEARER XOAUTH2");
        if offer.passwords {
            sasl.push_str(" PLAIN");
        }
    }
    let mut out = String::from("\"IMPLEMENTATION\" \"oauthbearer-proxy\"\r\n");
    out.push_str(&format!("\"SASL\" \"{sasl}\"\r\n"));
    for (name, value) in upstream.iter() {
        out.push_str(&String::from_utf8_lossy(&server_string(name.as_bytes())));
        if let Some(value) = value {
            out.push(' ');
            out.push_str(&String::from_utf8_lossy(&server_string(value)));
        }
        out.push_str("\r\n");
    }
    if offer.starttls {
        out.push_str("\"STARTTLS\"\r\n");
    }
    out.push_str(&format!("\"VERSION\" \"{VERSION}\"\r\n"));
    out
}

/// The greeting: the capabilities, then `OK`.
pub fn greeting(svc: &Service, tls: bool, upstream: &Capabilities) -> String {
    let mut out = capabilities(Offer::of(svc, tls), upstream);
    out.push_str(&ok(&format!("{} ManageSieve ready.", svc.hostname)));
    out
}

/// `OK "text"` with CRLF.
pub fn ok(text: &str) -> String {
    format!("OK {}\r\n", quoted(text))
}

/// `NO "text"` with CRLF.
pub fn no(text: &str) -> String {
    format!("NO {}\r\n", quoted(text))
}

/// `NO (TRYLATER) "text"`: a temporary failure (§1.3).
pub fn try_later(text: &str) -> String {
    format!("NO (TRYLATER) {}\r\n", quoted(text))
}

/// `BYE "text"`: the server closes the connection.
pub fn bye(text: &str) -> String {
    format!("BYE {}\r\n", quoted(text))
}

fn quoted(text: &str) -> String {
    String::from_utf8_lossy(&server_string(text.as_bytes())).into_owned()
}

pub fn auth_failed() -> String {
    no("Authentication failed.")
}

/// Authentication before STARTTLS on a STARTTLS listener (§1.3).
pub fn encrypt_needed() -> String {
    "NO (ENCRYPT-NEEDED) \"Authentication requires STARTTLS first.\"\r\n".into()
}

pub fn too_many_failures() -> String {
    bye("Too many authentication failures.")
}

/// The response to a failed login (the challenge, if any, has already
/// been exchanged).
pub fn failure(failure: &Failure) -> String {
    match failure {
        Failure::Refused { .. } => auth_failed(),
        Failure::ProviderUnavailable(_) => {
            try_later("Temporary authentication failure, try again later.")
        }
        Failure::UpstreamUnavailable(_) => {
            try_later("Mail server temporarily unavailable, try again later.")
        }
        Failure::UpstreamRefused(_) => no("The mail server does not accept this account."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_quoted() {
        assert_eq!(ok("Logged in."), "OK \"Logged in.\"\r\n");
        assert_eq!(no("a \"b\""), "NO \"a \\\"b\\\"\"\r\n");
        assert_eq!(try_later("later"), "NO (TRYLATER) \"later\"\r\n");
        assert_eq!(bye("bye"), "BYE \"bye\"\r\n");
    }

    #[test]
    fn capability_lists() {
        let sieve: Capabilities = std::sync::Arc::new(vec![
            ("SIEVE".into(), Some(b"fileinto vacation".to_vec())),
            ("NOTIFY".into(), Some(b"mailto".to_vec())),
        ]);
        let before_tls = Offer {
            auth: false,
            passwords: true,
            starttls: true,
        };
        assert_eq!(
            capabilities(before_tls, &sieve),
            "\"IMPLEMENTATION\" \"oauthbearer-proxy\"\r\n\"SASL\" \"\"\r\n\
             \"SIEVE\" \"fileinto vacation\"\r\n\"NOTIFY\" \"mailto\"\r\n\
             \"STARTTLS\"\r\n\"VERSION\" \"1.0\"\r\n"
        );
        let after_tls = Offer {
            auth: true,
            passwords: true,
            starttls: false,
        };
        let caps = capabilities(after_tls, &sieve);
        assert!(caps.contains("\"SASL\" \"OAUTHBEARER XOAUTH2 PLAIN\"\r\n"));
        assert!(!caps.contains("STARTTLS"));
        let tokens_only = Offer {
            passwords: false,
            ..after_tls
        };
        assert!(capabilities(tokens_only, &sieve).contains("\"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n"));
    }

    #[test]
    fn failures() {
        let refused = Failure::Refused {
            status: crate::sasl::challenge::Status::InvalidToken,
            reason: "x".into(),
            directory: None,
        };
        assert_eq!(failure(&refused), "NO \"Authentication failed.\"\r\n");
        assert!(failure(&Failure::ProviderUnavailable("x".into())).starts_with("NO (TRYLATER) "));
        assert!(failure(&Failure::UpstreamUnavailable("x".into())).starts_with("NO (TRYLATER) "));
        assert!(failure(&Failure::UpstreamRefused("x".into())).starts_with("NO \""));
    }
}
