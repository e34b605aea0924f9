//! The Redis client: plain `redis://`, or `rediss://` with the server certificate always verified, and what a
//! failed connection says about the configuration.
//!
//! TLS trusts the system's root certificates (as the client crate loads them) plus `REDIS_CA_FILE` when set
//! (managed Redis services with a private CA). The client crate takes extra roots only as one PEM bundle that
//! replaces its own, so with a CA file the bundle is the system roots re-encoded plus the file's
//! certificates. An ACL user and its password come in the URL (`rediss://user:password@host:port`).
//!
//! [`misconfiguration`] tells a configuration the server refuses (certificate not verifiable, TLS against a
//! plain server, wrong password or user) from an outage (refused, timed out): start-up fails loudly on the
//! former and starts without Redis on the latter.

use std::path::Path;

use redis::{Client, ErrorKind, RedisError, ServerErrorKind, TlsCertificates};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The client for `url`, with `ca_file`'s certificates trusted besides the system roots (`rediss://` only).
pub(crate) fn client(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Client> {
    let invalid = |_| anyhow::anyhow!("REDIS_URL is not a valid redis:// or rediss:// URL");
    let Some(path) = ca_file else {
        return Client::open(url).map_err(invalid);
    };
    let mut bundle = String::new();
    let mut added = 0;
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| anyhow::anyhow!("REDIS_CA_FILE {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("REDIS_CA_FILE {}: {e}", path.display()))?;
        bundle.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_ref())));
        added += 1;
    }
    if added == 0 {
        anyhow::bail!("REDIS_CA_FILE {} holds no PEM certificate", path.display());
    }
    // A host without a system store still trusts the configured CA; errors reading it are not fatal.
    let system = rustls_native_certs::load_native_certs();
    for cert in &system.certs {
        bundle.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_ref())));
    }
    let certificates = TlsCertificates { client_tls: None, root_cert: Some(bundle.into_bytes()) };
    Client::build_with_tls(url, certificates).map_err(|e| anyhow::anyhow!("REDIS_URL / REDIS_CA_FILE: {e}"))
}

/// What is wrong with the configuration, when `error` says so; `None` for an outage (or anything else).
pub(crate) fn misconfiguration(error: &RedisError) -> Option<String> {
    if let Some(tls) = tls_error(error) {
        return Some(format!(
            "TLS to Redis failed ({tls}): check that REDIS_URL is rediss:// only for a TLS server and that \
             REDIS_CA_FILE (or the system roots) holds the CA of its certificate, issued for the URL's host"
        ));
    }
    let refused_credentials = error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
        || error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm);
    if refused_credentials {
        return Some(format!(
            "Redis refused the credentials ({error}): check the user and password in REDIS_URL \
             (redis[s]://user:password@host:port) and the user's ACL"
        ));
    }
    (error.kind() == ErrorKind::InvalidClientConfig).then(|| format!("REDIS_URL is not usable: {error}"))
}

/// The TLS failure behind `error`, if any: a rustls error anywhere in its chain of sources (the client crate
/// keeps an I/O cause as an `Arc<dyn Error>`, whose own `source` skips the I/O error, so that layer is opened
/// by hand).
fn tls_error(error: &RedisError) -> Option<String> {
    fn rustls_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        }
        e.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>().and_then(|shared| rustls_in(&**shared))
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = rustls_in(e) {
            return Some(tls.to_string());
        }
        source = e.source();
    }
    None
}
