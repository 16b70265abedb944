//! TLS for a listener (the admin API, a TCP source): the `tls_cert` and `tls_key` PEM files of
//! a table, both or neither, read and checked against each other into a rustls server
//! configuration ([`load_tls`]). Errors name the key written under the table's own path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::error::{ConfigError, Ctx, Sp, plain};

/// The certificate and key a listener serves TLS with (the admin API, a TCP source), read and
/// checked against each other.
#[derive(Clone)]
pub struct ServerTls {
    /// The PEM files, as the pipeline file names them (relative to its folder).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The server's TLS settings, with the `ring` provider.
    pub config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The `tls_cert` and `tls_key` of the table at `node` (`admin`, `sources.NAME`), both or
/// neither; loaded and checked against each other. The server offers the `alpn` protocols.
pub(crate) fn load_tls(
    cx: &Ctx,
    node: &str,
    (cert, key): (Option<&Sp<String>>, Option<&Sp<String>>),
    alpn: &[&[u8]],
) -> Result<Option<ServerTls>, ConfigError> {
    let (cert_key, key_key) = (format!("{node}.tls_cert"), format!("{node}.tls_key"));
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(cert), None) => {
            return Err(cx.err(
                &cert.span(),
                cert_key,
                "`tls_cert` needs `tls_key` too: the certificate's private key, a PEM file",
            ));
        }
        (None, Some(key)) => {
            return Err(cx.err(
                &key.span(),
                key_key,
                "`tls_key` needs `tls_cert` too: the certificate chain, a PEM file",
            ));
        }
    };
    let (cert_path, key_path) = (cx.path(cert.get_ref()), cx.path(key.get_ref()));
    let shown_path = |p: &Path| plain(&p.display().to_string());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            let what = format!("{}: {}", shown_path(&cert_path), pem_error(e));
            cx.err(&cert.span(), &cert_key, what)
        })?;
    if chain.is_empty() {
        return Err(cx.err(
            &cert.span(),
            cert_key,
            format!(
                "{}: no certificate in it: write the chain as PEM \
                 (`-----BEGIN CERTIFICATE-----`), the server's own first",
                shown_path(&cert_path)
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        let what = format!("{}: {}", shown_path(&key_path), pem_error(e));
        cx.err(&key.span(), &key_key, what)
    })?;
    let config = server_config(chain, private, alpn).map_err(|e| {
        let what = format!(
            "{} does not fit {}: {e}",
            shown_path(&key_path),
            shown_path(&cert_path)
        );
        cx.err(&key.span(), key_key, what)
    })?;
    Ok(Some(ServerTls {
        cert: PathBuf::from(cert.get_ref()),
        key: PathBuf::from(key.get_ref()),
        config: Arc::new(config),
    }))
}

/// A PEM reading error, said for a person.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read it: {e}"),
        Error::NoItemsFound => "no private key in it: write it as PEM \
                                (`-----BEGIN PRIVATE KEY-----`)"
            .to_string(),
        other => format!("not a PEM file: {other}"),
    }
}

/// TLS 1.2 and 1.3 with the `ring` provider, offering the `alpn` protocols; the key must
/// match the certificate.
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
