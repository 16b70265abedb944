//! TLS for the tests of listeners (the admin API, the TCP source): a private CA and a
//! certificate it signed, as PEM files, and a client that trusts that CA.

use std::sync::Arc;

use anyhow::Result;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::Dir;

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in
/// `dir`: `ca.pem` (and its key, `ca-key.pem`), `cert.pem`, `key.pem`.
pub fn make_certificates(dir: &Dir) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "weir test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    dir.write("ca.pem", &ca.self_signed(&ca_key)?.pem())?;
    dir.write("ca-key.pem", &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    dir.write("cert.pem", &leaf.signed_by(&leaf_key, &issuer)?.pem())?;
    dir.write("key.pem", &leaf_key.serialize_pem())?;
    Ok(())
}

/// A TLS client connection to `localhost` that trusts the CA in `dir` (`ca.pem`, from
/// [`make_certificates`]).
pub fn client(dir: &Dir) -> Result<rustls::ClientConnection> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.path("ca.pem"))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost")?;
    Ok(rustls::ClientConnection::new(Arc::new(config), name)?)
}
