//! IMAP replies: the capability list this proxy offers before login, and
//! the one place where a login failure becomes IMAP responses.

use crate::client::Client;
use crate::config::TlsMode;
use crate::gateway::{Failure, Service};

pub fn capabilities(svc: &Service, client: &Client) -> String {
    capabilities_on(svc, client.is_tls())
}

/// The capabilities offered on a connection that is (`tls`) or is not yet
/// under TLS.
fn capabilities_on(svc: &Service, tls: bool) -> String {
    let mut caps = String::from("IMAP4rev1 SASL-IR ID");
    if svc.listener.tls == TlsMode::StartTls && !tls {
        caps.push_str(" STARTTLS LOGINDISABLED");
        return caps;
    }
    caps.push_str(" AUTH=OAUTHBEARER AUTH=XOAUTH2");
    if svc.listener.accepts_passwords() && crate::login::auth_allowed(svc, tls) {
        caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
    } else {
        caps.push_str(" LOGINDISABLED");
    }
    caps
}

/// The greeting on a connection that is (`tls`) or is not yet under TLS.
pub fn greeting(svc: &Service, tls: bool) -> String {
    format!(
        "* OK [CAPABILITY {}] {} ready.\r\n",
        capabilities_on(svc, tls),
        svc.hostname
    )
}

pub const AUTH_FAILED: &str = "NO [AUTHENTICATIONFAILED] Authentication failed.";
pub const PRIVACY_REQUIRED: &str =
    "NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
pub const INACTIVE: &str = "* BYE Disconnected for inactivity.\r\n";
pub const TOO_MANY_FAILURES: &str = "* BYE Too many authentication failures.\r\n";

/// The tagged response for a failed login (the challenge, if any, has
/// already been exchanged).
pub fn failure(tag: &str, failure: &Failure) -> String {
    let text = match failure {
        Failure::Refused { .. } => AUTH_FAILED,
        Failure::ProviderUnavailable(_) => {
            "NO [UNAVAILABLE] Temporary authentication failure, try again later."
        }
        Failure::UpstreamUnavailable(_) => {
            "NO [UNAVAILABLE] Mail server temporarily unavailable, try again later."
        }
        // RFC 5530: AUTHENTICATIONFAILED "typically includes unknown user";
        // AUTHORIZATIONFAILED is for an authorization identity the client
        // asked for, and the client asked for none other than its own.
        Failure::UpstreamRefused(_) => {
            "NO [AUTHENTICATIONFAILED] The mail server does not accept this account."
        }
    };
    format!("{tag} {text}\r\n")
}
