//! oauthbearer-proxy: an IMAP and SMTP submission front proxy that accepts
//! OAuth 2.0 bearer tokens (SASL OAUTHBEARER, RFC 7628, and XOAUTH2),
//! validates them at the organisation's OpenID Connect provider, logs in to
//! the existing Dovecot / Postfix as the resolved user and relays the session.
//!
//! # Layout
//! - `main.rs`: command line (run, check, verify-token, route).
//! - [`config`]: the TOML file → a validated, typed [`config::Config`].
//! - [`secret`]: `Secret`, a string that never prints itself.
//! - [`server`]: listeners, accept loop, TLS handshakes, per-connection log line.
//! - [`tls`]: certificate loading, acceptor and connectors.
//! - [`stream`], [`line`], [`client`]: plaintext/TLS streams, bounded line framing,
//!   the pre-auth client connection.
//! - [`sasl`]: OAUTHBEARER / XOAUTH2 / PLAIN / LOGIN decoding and RFC 7628
//!   error challenges (pure).
//! - [`frontend`]: the registry of protocol front-ends (one line each).
//! - [`imap`], [`smtp`]: the protocol front-ends; they only speak their
//!   protocol's wire syntax (commands, replies, their [`login::Wire`]).
//! - [`login`]: the whole authentication attempt, shared by every protocol:
//!   mechanism, SASL exchange, error challenge, password tokens,
//!   passthrough, failure delay and count, then the relay.
//! - [`gateway`]: the credential check inside it: token → identity →
//!   upstream login, the verdict booked (metrics, penalty).
//! - [`idp`]: token validation (OIDC UserInfo, RFC 7662 introspection, local
//!   JWT with JWKS and discovery), the token cache and its counters.
//! - [`upstream`]: connecting and logging in to Dovecot / Postfix, one login
//!   strategy per protocol behind [`upstream::Strategy`].
//! - [`backends`]: several backends per upstream: routing (hash, claim,
//!   map), health checks, failover, per-backend metrics.
//! - [`limits`]: connection limits (total, per IP) and the per-IP auth failure penalty.
//! - [`apppass`]: app passwords: the interface shared by the site and the
//!   login path, the SQLite and PostgreSQL stores, the login with one.
//! - [`web`]: the self-service site (`protocol = "https"`): sign-in at the provider, app passwords, client set-up.
//! - [`control`]: the local administration socket and its commands (`who`, `kick`).
//! - [`sessions`]: the registry of relayed sessions (`who`, `kick`),
//!   re-validation of their tokens, ending them when access ends.
//! - [`relay`]: copying the logged-in session both ways, idle timeout.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers in (from load
//!   balancers) and v2 out (to upstreams).
//! - [`http`]: the one HTTP listener: `/metrics`, `/healthz`, OpenID
//!   Connect back-channel logout.
//! - [`metrics`]: the Prometheus counters.
//! - [`notify`]: systemd's notification protocol (READY, STATUS, WATCHDOG).
#![forbid(unsafe_code)]

pub mod apppass;
pub mod backends;
pub mod client;
pub mod config;
pub mod control;
pub mod frontend;
pub mod gateway;
pub mod http;
pub mod idp;
pub mod imap;
pub mod limits;
pub mod line;
pub mod login;
pub mod managesieve;
pub mod metrics;
pub mod notify;
pub mod pop3;
pub mod proxy_protocol;
pub mod relay;
pub mod sasl;
pub mod secret;
pub mod server;
pub mod sessions;
pub mod smtp;
pub mod stream;
pub mod tls;
#[cfg(test)]
pub mod transcript;
pub mod upstream;
pub mod web;
