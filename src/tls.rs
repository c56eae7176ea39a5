//! TLS: certificate loading (PEM through `rustls::pki_types::pem::PemObject`),
//! the server acceptor built once per configuration, and client connectors
//! for upstreams (system roots, or a private CA).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // Accepts PKCS#8, PKCS#1 (RSA) and SEC1 (EC) PEM blocks.
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The ALPN protocol names of a mail protocol (RFC 7301; IANA registers
/// `imap` and `smtp`, and ALPACA-style cross-protocol attacks are refused
/// by offering only the listener's own).
pub fn alpn(protocol: crate::config::Protocol) -> &'static [&'static [u8]] {
    crate::frontend::of(protocol).alpn
}

/// An acceptor that offers `alpn`: a client that sends ALPN must offer one
/// of these names or its handshake fails (`no_application_protocol`); a
/// client that sends no ALPN is served as before. Only TLS 1.2 and 1.3.
///
/// `session_tickets` TLS 1.3 tickets follow a full handshake: stateless
/// ones (encrypted with a key of this acceptor's, rotated every 6 hours),
/// so any number of clients can resume; 0 turns resumption off.
pub fn acceptor_alpn(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    session_tickets: usize,
) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.send_tls13_tickets = session_tickets;
    if session_tickets > 0 {
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    } else {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    // IMAP and SMTP servers speak first: what is written before the
    // handshake completes (the greeting) goes out right after the server's
    // Finished, in its first flight, instead of a round trip later. It is
    // public text, sent to whoever completes the key exchange.
    config.send_half_rtt_data = true;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connector that verifies the peer against `ca` if given, else the
/// system's roots plus Mozilla's (webpki) roots.
pub fn connector(ca: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::Cert {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
