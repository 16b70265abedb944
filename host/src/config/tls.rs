//! TLS for a listener (the admin API, a TCP source): the `tls_cert` and `tls_key` PEM files of
//! a table, both or neither, read and checked against each other into a rustls server
//! configuration ([`load_tls`], through `http::load_tls`). Errors name the key written under
//! the table's own path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::error::{ConfigError, Ctx, Sp, plain};
use crate::http::{self, TlsError};

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
    let config = http::load_tls(&cert_path, &key_path, alpn).map_err(|e| match e {
        TlsError::Mismatch(_) => {
            let what = format!(
                "{} does not fit {}: {e}",
                shown_path(&key_path),
                shown_path(&cert_path)
            );
            cx.err(&key.span(), &key_key, what)
        }
        _ if e.is_the_keys() => {
            let what = format!("{}: {e}", shown_path(&key_path));
            cx.err(&key.span(), &key_key, what)
        }
        _ => {
            let what = format!("{}: {e}", shown_path(&cert_path));
            cx.err(&cert.span(), &cert_key, what)
        }
    })?;
    Ok(Some(ServerTls {
        cert: PathBuf::from(cert.get_ref()),
        key: PathBuf::from(key.get_ref()),
        config,
    }))
}
