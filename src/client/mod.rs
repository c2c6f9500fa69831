//! The client side of the forward protocol, shared by forward output
//! ([`crate::sink`]'s `type = "forward"`) and the load tools: TCP, then
//! optional TLS (with a client certificate for mTLS), then the optional
//! shared-key/user handshake; reading acks.
//!
//! A [`Connector`] is built once from [`ClientSettings`] (certificates are
//! read then, so a bad path is a config error, not a failure per connection)
//! and connects any number of times.

mod ack;
mod handshake;

pub(crate) use ack::{ack_of, read_ack};

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How to reach forward servers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSettings {
    /// Shared key for the handshake (`None`: the server asks for none).
    pub(crate) shared_key: Option<String>,
    /// User and password, for servers with `user_auth`.
    pub(crate) username: String,
    pub(crate) password: String,
    /// Host name sent in PING.
    pub(crate) hostname: String,
    pub(crate) tls: Option<TlsSettings>,
    /// Longest wait for TCP, TLS and the handshake together.
    pub(crate) connect_timeout: Duration,
}

/// TLS towards forward servers.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSettings {
    /// CA certificates (PEM) the server's certificate must chain to.
    pub(crate) ca: PathBuf,
    /// Client certificate and key (PEM), for servers that require mTLS.
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    /// Name to verify (default: the host of the address).
    pub(crate) server_name: Option<String>,
}

/// A connected stream, plain or TLS.
pub(crate) type Stream = Pin<Box<dyn AsyncReadWrite + Send>>;

pub(crate) trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

/// Connects to forward servers with one set of settings.
#[derive(Clone)]
pub(crate) struct Connector {
    settings: ClientSettings,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    /// Reads the certificates the settings name.
    ///
    /// # Errors
    /// A certificate or key cannot be read or is not valid PEM (the message
    /// names the file).
    pub(crate) fn new(settings: ClientSettings) -> Result<Self, String> {
        let tls = match &settings.tls {
            None => None,
            Some(t) => Some(tls_connector(t)?),
        };
        Ok(Self { settings, tls })
    }

    /// Connects to HOST:PORT, wraps in TLS and runs the handshake as the
    /// settings ask, all within `connect_timeout`.
    pub(crate) async fn connect(&self, to: &str) -> anyhow::Result<Stream> {
        let timeout = if self.settings.connect_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            self.settings.connect_timeout
        };
        tokio::time::timeout(timeout, self.connect_now(to))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {to}: no answer in {timeout:?}"))?
    }

    async fn connect_now(&self, to: &str) -> anyhow::Result<Stream> {
        use anyhow::Context;
        let tcp = TcpStream::connect(to)
            .await
            .with_context(|| format!("connecting to {to}"))?;
        let _ = tcp.set_nodelay(true);
        let mut s: Stream = match (&self.tls, &self.settings.tls) {
            (Some(connector), Some(t)) => {
                let name = match &t.server_name {
                    Some(n) => ServerName::try_from(n.clone())?,
                    // The host part of HOST:PORT: a name or an address.
                    None => match host_of(to).parse::<std::net::IpAddr>() {
                        Ok(ip) => ServerName::from(ip),
                        Err(_) => ServerName::try_from(host_of(to).to_string())?,
                    },
                };
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {to}"))?;
                Box::pin(tls)
            }
            _ => Box::pin(tcp),
        };
        if let Some(key) = &self.settings.shared_key {
            handshake::run(&mut s, key, &self.settings)
                .await
                .with_context(|| format!("forward handshake with {to}"))?;
        }
        Ok(s)
    }
}

fn tls_connector(t: &TlsSettings) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&t.ca).map_err(|e| format!("{}: {e}", t.ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", t.ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", t.ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", t.ca.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("a client certificate needs both cert and key".into()),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(to: &str) -> &str {
    let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_splits_names_and_addresses() {
        assert_eq!(super::host_of("weir.logging.svc:24224"), "weir.logging.svc");
        assert_eq!(super::host_of("127.0.0.1:24224"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:24224"), "::1");
    }
}
