//! POP3 replies: the greeting, the CAPA list this proxy offers before
//! login (RFC 2449), and the one place where a login failure becomes a
//! `-ERR` line with its RFC 3206 response code: `[AUTH]` for the client's
//! credentials, `[SYS/TEMP]` for the provider's or the mail server's
//! trouble.

use crate::config::TlsMode;
use crate::gateway::{Failure, Service};

/// What decides the capabilities of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// The listener's TLS mode.
    pub listener_tls: TlsMode,
    /// Password logins (passthrough or password tokens) are accepted.
    pub passwords: bool,
    /// The connection is under TLS now.
    pub tls: bool,
}

impl Offer {
    pub fn of(svc: &Service, tls: bool) -> Self {
        Self {
            listener_tls: svc.listener.tls,
            passwords: svc.listener.accepts_passwords(),
            tls,
        }
    }

    /// Whether authentication may happen now: under TLS, or on a listener
    /// configured without TLS (the administrator vouches for the path).
    pub fn auth_allowed(&self) -> bool {
        self.tls || self.listener_tls == TlsMode::None
    }

    /// The SASL mechanisms offered now (empty before STLS).
    pub fn mechanisms(&self) -> &'static str {
        match (self.auth_allowed(), self.passwords) {
            (false, _) => "",
            (true, false) => "OAUTHBEARER XOAUTH2",
            (true, true) => "OAUTHBEARER XOAUTH2 PLAIN LOGIN",
        }
    }

    /// The whole CAPA response, `+OK` to the final `.`.
    ///
    /// `TOP` and `UIDL` are TRANSACTION-state capabilities of the mail
    /// server behind (every Dovecot has them, and Dovecot's own pop3-login
    /// lists them before login): clients that probe only once keep using them.
    pub fn capa(&self) -> String {
        let mut out =
            String::from("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n");
        if self.listener_tls == TlsMode::StartTls && !self.tls {
            out.push_str("STLS\r\n");
        }
        let mechanisms = self.mechanisms();
        if !mechanisms.is_empty() {
            out.push_str("SASL ");
            out.push_str(mechanisms);
            out.push_str("\r\n");
        }
        if self.passwords && self.auth_allowed() {
            out.push_str("USER\r\n");
        }
        out.push_str(".\r\n");
        out
    }

    /// The answer to a bare `AUTH`: the mechanisms, one a line.
    pub fn auth_list(&self) -> String {
        let mut out = String::from("+OK\r\n");
        for mechanism in self.mechanisms().split_whitespace() {
            out.push_str(mechanism);
            out.push_str("\r\n");
        }
        out.push_str(".\r\n");
        out
    }
}

/// The greeting (RFC 1939 §4), without a timestamp: APOP is not offered.
pub fn greeting(svc: &Service) -> String {
    format!("+OK {} ready.\r\n", svc.hostname)
}

pub const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.\r\n";
pub const PRIVACY_REQUIRED: &str =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
pub const TOO_MANY_FAILURES: &str = "-ERR [AUTH] Too many authentication failures.\r\n";
pub const IDLE_FAREWELL: &str = "-ERR Disconnected for inactivity.\r\n";

/// The refusal of a connection over a limit (`what` says which).
pub fn over_limit(what: &str) -> String {
    format!("-ERR [SYS/TEMP] {what}, try again later.\r\n")
}

/// The reply to a failed login (the error challenge, if any, has already
/// been exchanged).
pub fn failure(failure: &Failure) -> &'static str {
    match failure {
        Failure::Refused { .. } => AUTH_FAILED,
        Failure::ProviderUnavailable(_) => {
            "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n"
        }
        Failure::UpstreamUnavailable(_) => {
            "-ERR [SYS/TEMP] Mail server temporarily unavailable, try again later.\r\n"
        }
        Failure::UpstreamRefused(_) => {
            "-ERR [AUTH] The mail server does not accept this account.\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(listener_tls: TlsMode, passwords: bool, tls: bool) -> Offer {
        Offer {
            listener_tls,
            passwords,
            tls,
        }
    }

    #[test]
    fn capa_before_stls_offers_only_stls() {
        let capa = offer(TlsMode::StartTls, true, false).capa();
        assert_eq!(
            capa,
            "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"
        );
        assert_eq!(
            offer(TlsMode::StartTls, true, false).auth_list(),
            "+OK\r\n.\r\n"
        );
    }

    #[test]
    fn capa_under_tls() {
        let capa = offer(TlsMode::StartTls, true, true).capa();
        assert!(capa.contains("\r\nSASL OAUTHBEARER XOAUTH2 PLAIN LOGIN\r\nUSER\r\n.\r\n"));
        assert!(!capa.contains("STLS"));
        let capa = offer(TlsMode::Implicit, false, true).capa();
        assert!(capa.contains("\r\nSASL OAUTHBEARER XOAUTH2\r\n.\r\n"));
        assert!(!capa.contains("USER"));
        assert_eq!(
            offer(TlsMode::Implicit, true, true).auth_list(),
            "+OK\r\nOAUTHBEARER\r\nXOAUTH2\r\nPLAIN\r\nLOGIN\r\n.\r\n"
        );
    }

    #[test]
    fn capa_on_a_plaintext_listener() {
        let capa = offer(TlsMode::None, true, false).capa();
        assert!(capa.contains("SASL OAUTHBEARER XOAUTH2 PLAIN LOGIN\r\nUSER\r\n"));
        assert!(!capa.contains("STLS"));
    }

    #[test]
    fn failures_carry_response_codes() {
        use crate::sasl::challenge::Status;
        let refused = Failure::Refused {
            status: Status::InvalidToken,
            reason: "expired".into(),
            directory: None,
        };
        assert_eq!(failure(&refused), "-ERR [AUTH] Authentication failed.\r\n");
        assert!(failure(&Failure::ProviderUnavailable("x".into())).starts_with("-ERR [SYS/TEMP] "));
        assert!(failure(&Failure::UpstreamUnavailable("x".into())).starts_with("-ERR [SYS/TEMP] "));
        assert!(failure(&Failure::UpstreamRefused("x".into())).starts_with("-ERR [AUTH] "));
        assert_eq!(
            over_limit("Too many connections"),
            "-ERR [SYS/TEMP] Too many connections, try again later.\r\n"
        );
    }
}
