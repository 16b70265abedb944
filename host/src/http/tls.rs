//! A listener's TLS: a certificate chain and its private key, PEM files, read and checked
//! against each other into a rustls server config. The errors say what is wrong with which
//! file, without the file's name: the caller names it as its user wrote it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate and key could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read, or is not PEM.
    #[error("{}", pem_error(.0))]
    Cert(pem::Error),
    #[error(
        "no certificate in it: write the chain as PEM (`-----BEGIN CERTIFICATE-----`), the \
         server's own first"
    )]
    NoCertificate,
    /// The key file cannot be read, is not PEM, or holds no key.
    #[error("{}", pem_error(.0))]
    Key(pem::Error),
    /// The key does not fit the certificate (or rustls refused the pair).
    #[error("{0}")]
    Mismatch(rustls::Error),
}

impl TlsError {
    /// Whether the key file is the one to blame (else the certificate file).
    pub fn is_the_keys(&self) -> bool {
        matches!(self, TlsError::Key(_) | TlsError::Mismatch(_))
    }
}

/// Reads the chain at `cert` and the key at `key`; TLS 1.2 and 1.3 with the `ring` provider,
/// offering the `alpn` protocols (`http/1.1` for an HTTP listener, none for raw lines).
pub fn load_tls(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(TlsError::Cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(TlsError::Key)?;
    let config = server_config(chain, private, alpn).map_err(TlsError::Mismatch)?;
    Ok(Arc::new(config))
}

/// A PEM reading error, said for a person.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        pem::Error::NoItemsFound => "no private key in it: write it as PEM \
                                     (`-----BEGIN PRIVATE KEY-----`)"
            .to_string(),
        other => format!("not a PEM file: {other}"),
    }
}

/// TLS 1.2 and 1.3 with the `ring` provider, offering the `alpn` protocols; the key must match
/// the certificate.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
