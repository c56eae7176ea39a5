//! SMTP replies: the EHLO keyword list this proxy promises, the fixed
//! replies of the pre-auth state (codes as Dovecot's submission-login uses
//! them), and the one place where a login failure becomes a reply.

use crate::gateway::{Failure, Service};

/// What the proxy itself adds to (or withholds from) the upstream's
/// keywords on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Whether AUTH may be used now (TLS is active or not required).
    pub auth: bool,
    /// Whether PLAIN and LOGIN are relayed (password passthrough).
    pub passwords: bool,
    /// Whether STARTTLS is offered (a STARTTLS listener before TLS).
    pub starttls: bool,
}

/// Upstream keywords that the proxy answers itself or that only the proxy
/// may use: never promised to a client.
const WITHHELD: &[&str] = &["AUTH", "STARTTLS", "XCLIENT", "XFORWARD"];

fn withheld(keyword_line: &str) -> bool {
    // "AUTH=PLAIN LOGIN" is the pre-RFC 4954 form of AUTH.
    let keyword = keyword_line
        .split([' ', '='])
        .next()
        .unwrap_or(keyword_line);
    keyword.is_empty() || WITHHELD.iter().any(|w| w.eq_ignore_ascii_case(keyword))
}

/// The EHLO reply: `250-<hostname>`, the upstream's keywords minus the
/// withheld ones, then the proxy's own AUTH and STARTTLS.
pub fn ehlo(hostname: &str, upstream: &[String], offer: Offer) -> String {
    let mut lines = vec![hostname.to_string()];
    lines.extend(upstream.iter().filter(|k| !withheld(k)).cloned());
    if offer.auth {
        let mut auth = String::from("AUTH OAUTHBEARER XOAUTH2");
        if offer.passwords {
            auth.push_str(" PLAIN LOGIN");
        }
        lines.push(auth);
    }
    if offer.starttls {
        lines.push("STARTTLS".into());
    }
    multiline(250, &lines)
}

/// `code-line` … `code line` with CRLFs. Control characters are dropped:
/// the lines may be upstream text relayed into our reply.
pub fn multiline(code: u16, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("{code}\r\n");
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    out
}

pub fn banner(svc: &Service) -> String {
    format!("220 {} ESMTP\r\n", svc.hostname)
}

pub fn helo(svc: &Service) -> String {
    format!("250 {}\r\n", svc.hostname)
}

pub fn timeout(svc: &Service) -> String {
    format!("421 4.4.2 {} Timeout\r\n", svc.hostname)
}

pub fn too_many_failures(svc: &Service) -> String {
    format!(
        "421 4.7.0 {} Too many authentication failures\r\n",
        svc.hostname
    )
}

pub const OK: &str = "250 2.0.0 OK\r\n";
pub const HELP: &str = "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP RSET HELP QUIT\r\n";
pub const BYE: &str = "221 2.0.0 Bye\r\n";
pub const READY_FOR_TLS: &str = "220 2.0.0 Ready to start TLS\r\n";
pub const TLS_ACTIVE: &str = "502 5.5.1 TLS is already active\r\n";
pub const NO_STARTTLS: &str = "502 5.5.1 STARTTLS is not offered here\r\n";
pub const LINE_TOO_LONG: &str = "500 5.5.6 Line too long\r\n";
pub const UNKNOWN_COMMAND: &str = "500 5.5.2 Unknown command\r\n";
pub const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required\r\n";
pub const EHLO_FIRST: &str = "503 5.5.1 EHLO first\r\n";
pub const ENCRYPTION_REQUIRED: &str =
    "538 5.7.11 Encryption required for requested authentication mechanism\r\n";
pub const UNSUPPORTED_MECHANISM: &str = "504 5.5.4 Unsupported authentication mechanism\r\n";
pub const INVALID_BASE64: &str = "501 5.5.2 Invalid base64 data in authentication response\r\n";
pub const INVALID_PLAIN: &str = "501 5.5.2 Invalid PLAIN or LOGIN response\r\n";
pub const AUTH_CANCELLED: &str = "501 5.5.2 Authentication cancelled\r\n";
pub const RESPONSE_TOO_LONG: &str = "500 5.5.6 Authentication response too long\r\n";
pub const INVALID_CREDENTIALS: &str = "535 5.7.8 Authentication credentials invalid\r\n";
pub const AUTH_SUCCEEDED: &str = "235 2.7.0 Authentication successful\r\n";

/// The reply to a failed login (the error challenge, if any, has already
/// been exchanged).
pub fn failure(failure: &Failure) -> &'static str {
    match failure {
        Failure::Refused { .. } => INVALID_CREDENTIALS,
        Failure::ProviderUnavailable(_) => "454 4.7.0 Temporary authentication failure\r\n",
        Failure::UpstreamUnavailable(_) => {
            "454 4.7.0 Temporary authentication failure (mail server unavailable), try again later\r\n"
        }
        Failure::UpstreamRefused(_) => {
            "535 5.7.8 Authentication credentials invalid (the mail server does not accept this account)\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const POSTFIX: &[&str] = &[
        "PIPELINING",
        "SIZE 10240000",
        "VRFY",
        "ETRN",
        "AUTH PLAIN LOGIN",
        "AUTH=PLAIN LOGIN",
        "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT",
        "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ];

    #[test]
    fn ehlo_after_tls_filters_and_adds_auth() {
        let offer = Offer {
            auth: true,
            passwords: false,
            starttls: false,
        };
        assert_eq!(
            ehlo("proxy.test", &keywords(POSTFIX), offer),
            "250-proxy.test\r\n\
             250-PIPELINING\r\n\
             250-SIZE 10240000\r\n\
             250-VRFY\r\n\
             250-ETRN\r\n\
             250-ENHANCEDSTATUSCODES\r\n\
             250-8BITMIME\r\n\
             250-DSN\r\n\
             250-SMTPUTF8\r\n\
             250-CHUNKING\r\n\
             250 AUTH OAUTHBEARER XOAUTH2\r\n"
        );
    }

    #[test]
    fn ehlo_with_passwords() {
        let offer = Offer {
            auth: true,
            passwords: true,
            starttls: false,
        };
        let reply = ehlo("proxy.test", &keywords(&["PIPELINING"]), offer);
        assert_eq!(
            reply,
            "250-proxy.test\r\n250-PIPELINING\r\n250 AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN\r\n"
        );
    }

    #[test]
    fn ehlo_before_starttls_has_no_auth() {
        let offer = Offer {
            auth: false,
            passwords: true,
            starttls: true,
        };
        let reply = ehlo("proxy.test", &keywords(POSTFIX), offer);
        assert!(reply.ends_with("250 STARTTLS\r\n"), "{reply}");
        assert!(!reply.contains("AUTH"), "{reply}");
        assert!(!reply.contains("XCLIENT"), "{reply}");
        assert!(!reply.contains("XFORWARD"), "{reply}");
        assert_eq!(reply.matches("STARTTLS").count(), 1, "{reply}");
        assert_eq!(reply.matches("250 ").count(), 1, "{reply}");
    }

    #[test]
    fn ehlo_keywords_are_matched_case_insensitively_and_sanitised() {
        let offer = Offer {
            auth: false,
            passwords: false,
            starttls: false,
        };
        let reply = ehlo(
            "h",
            &keywords(&["auth login", "StartTLS", "xclient ADDR", "", "SIZE\r1"]),
            offer,
        );
        assert_eq!(reply, "250-h\r\n250 SIZE1\r\n");
        assert_eq!(ehlo("h", &[], offer), "250 h\r\n");
    }

    #[test]
    fn multiline_continuation() {
        assert_eq!(multiline(250, &keywords(&["a"])), "250 a\r\n");
        assert_eq!(multiline(235, &[]), "235\r\n");
        assert_eq!(
            multiline(535, &keywords(&["a", "b", "c"])),
            "535-a\r\n535-b\r\n535 c\r\n"
        );
    }

    #[test]
    fn failure_replies() {
        use crate::sasl::challenge::Status;
        let refused = Failure::Refused {
            status: Status::InvalidToken,
            reason: String::new(),
            directory: None,
        };
        assert!(failure(&refused).starts_with("535 5.7.8 "));
        assert!(failure(&Failure::ProviderUnavailable(String::new())).starts_with("454 4.7.0 "));
        assert!(failure(&Failure::UpstreamUnavailable(String::new())).starts_with("454 4.7.0 "));
        assert!(failure(&Failure::UpstreamRefused(String::new())).starts_with("535 5.7.8 "));
    }
}
