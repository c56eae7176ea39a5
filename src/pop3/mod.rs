//! The POP3 front-end (RFC 1939 AUTHORIZATION state, CAPA RFC 2449, STLS
//! RFC 2595, AUTH RFC 5034 with initial responses, response codes RFC 3206).
//!
//! - [`command`]: parsing command lines.
//! - [`reply`]: the greeting, CAPA, and the mapping from login failures to replies.
//! - [`session`]: the pre-auth state machine, ending in a relayed session.
//! - [`wire`]: POP3's syntax for the shared login path ([`crate::login`]).

pub mod command;
pub mod reply;
pub mod session;
pub mod wire;

pub use session::serve;

use crate::client::Client;
use crate::frontend::Frontend;
use crate::gateway::{Outcome, Service};
use crate::upstream::BoxFuture;

/// The POP3 front-end, as the server and the limits see it.
pub static FRONTEND: Frontend = Frontend {
    alpn: &[b"pop3"],
    greeting: |svc, _| Some(reply::greeting(svc)),
    serve: serve_boxed,
    idle_farewell: |_| reply::IDLE_FAREWELL.to_string(),
    ended: |_, why| format!("-ERR [AUTH] {why}\r\n"),
    over_limit: |_, what| reply::over_limit(what),
};

fn serve_boxed(client: Client, svc: &Service) -> BoxFuture<'_, Outcome> {
    Box::pin(serve(client, svc))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Protocol};

    const FILE: &str = r#"
[listener.pop3s]
protocol = "pop3"
bind = "127.0.0.1:995"
tls = "none"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
PROTOCOL
address = "127.0.0.1:10110"
login.method = "METHOD"
login.username = "proxy"
login.secret = "s3cret"

[directory.idp]
type = "oidc"
endpoint.url = "https://idp/userinfo"
required-scope = "email"
"#;

    fn parse(protocol: &str, method: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&FILE.replace("PROTOCOL", protocol).replace("METHOD", method))
    }

    #[test]
    fn a_pop3_listener_needs_a_pop3_upstream_with_a_master_user() {
        let c = parse("", "master-user").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listeners[0].protocol, Protocol::Pop3);
        let c = parse("protocol = \"pop3\"", "master-user").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.upstreams["dovecot"].protocol, Some(Protocol::Pop3));
        let e = parse("protocol = \"imap\"", "master-user").unwrap_err();
        assert_eq!(e.key, "listener.pop3s.upstream", "{e}");
        assert!(e.to_string().contains("speaks imap"), "{e}");
        let e = parse("", "xclient").unwrap_err();
        assert_eq!(e.key, "upstream.dovecot.login.method", "{e}");
        assert!(e.to_string().contains("POP3 listener `pop3s`"), "{e}");
    }

    #[test]
    fn registered_with_its_alpn_id() {
        assert_eq!(crate::frontend::of(Protocol::Pop3).alpn, &[b"pop3"]);
        assert_eq!(Protocol::Pop3.name(), "pop3");
    }
}
