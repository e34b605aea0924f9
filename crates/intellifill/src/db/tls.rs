//! TLS to Postgres (rustls, no system OpenSSL).
//!
//! Every connection the server opens (the pool and `migrate`) uses this connector; whether TLS is used is
//! the connection string's `sslmode`: `disable` never, `prefer` (the default) when the server offers it,
//! `require` always. When TLS is used the server certificate is always verified (like libpq's `verify-full`)
//! against the Mozilla roots plus `DATABASE_CA_FILE` (e.g. the CA of a hosted Supabase project, whose
//! certificates are not signed by a public CA). A connection that cannot be verified fails; it never falls
//! back to plain text.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `extra_ca` (a PEM file with one or more CA certificates) and the public roots.
pub(crate) fn connector(extra_ca: Option<&Path>) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("DATABASE_CA_FILE {}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("DATABASE_CA_FILE {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("DATABASE_CA_FILE {}: unusable certificate: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("DATABASE_CA_FILE {} holds no PEM certificate", path.display());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
