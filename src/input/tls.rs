//! TLS for the listeners (forward and HTTP; rustls): a certificate chain and key from
//! PEM files, optional client-certificate verification against a CA (mTLS),
//! and a minimum protocol version.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::units::HumanDuration;

fn default_tls_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

fn default_tls_version() -> TlsVersion {
    TlsVersion::V1_2
}

/// `[forward.tls]`, `[http.tls]`: TLS on a listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub(crate) cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key_path: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mTLS).
    pub(crate) ca_path: Option<PathBuf>,
    #[serde(default = "default_tls_version")]
    pub(crate) min_version: TlsVersion,
    /// A client must finish the TLS handshake within this time.
    #[serde(default = "default_tls_handshake_timeout")]
    pub(crate) handshake_timeout: HumanDuration,
}

/// Builds the server configuration, or says which key is wrong and why.
/// `section` names the table in errors (`forward.tls`, `http.tls`).
pub(crate) fn server_config(c: &TlsConfig, section: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |e: &dyn std::fmt::Display| {
        TlsError::new(
            format!("{section}.cert_path"),
            format!("{}: {e}", c.cert_path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_path)
        .map_err(|e| cert_err(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(&e))?;
    if certs.is_empty() {
        return Err(cert_err(&"no PEM certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key_path).map_err(|e| {
        TlsError::new(
            format!("{section}.key_path"),
            format!("{}: {e}", c.key_path.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match c.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS12, &rustls::version::TLS13],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::new(format!("{section}.min_version"), e.to_string()))?;
    let builder = match &c.ca_path {
        Some(ca) => {
            let ca_err = |e: &dyn std::fmt::Display| {
                TlsError::new(
                    format!("{section}.ca_path"),
                    format!("{}: {e}", ca.display()),
                )
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| ca_err(&e))? {
                roots
                    .add(cert.map_err(|e| ca_err(&e))?)
                    .map_err(|e| ca_err(&e))?;
            }
            if roots.is_empty() {
                return Err(ca_err(&"no PEM certificate found"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::new(format!("{section}.ca_path"), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::new(
            format!("{section}.key_path"),
            format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// A TLS setting that cannot be used: the config key and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub(crate) struct TlsError {
    pub(crate) key: String,
    pub(crate) message: String,
}

impl TlsError {
    fn new(key: String, message: String) -> Self {
        Self { key, message }
    }
}
