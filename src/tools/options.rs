//! The load tools' command-line options for reaching a forward server; the
//! connection itself is [`crate::client`], the one forward output uses.

use std::path::PathBuf;

use clap::Args;

use crate::client::{ClientSettings, Connector, Stream, TlsSettings};

#[derive(Debug, Clone, Args)]
pub(crate) struct ClientOptions {
    /// Shared key for the forward handshake.
    #[arg(long)]
    pub(crate) shared_key: Option<String>,
    /// Username and password for the handshake's user auth.
    #[arg(long)]
    pub(crate) username: Option<String>,
    #[arg(long)]
    pub(crate) password: Option<String>,
    /// Host name sent in PING.
    #[arg(long, default_value = "weir-loadgen")]
    pub(crate) client_hostname: String,
    /// Connect with TLS, trusting this CA file (PEM).
    #[arg(long)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Server name to verify (default: the host of --to).
    #[arg(long)]
    pub(crate) tls_server_name: Option<String>,
    /// Client certificate (PEM) for servers that require mTLS.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl ClientOptions {
    /// The connector these options describe.
    pub(crate) fn connector(&self) -> anyhow::Result<Connector> {
        Connector::new(ClientSettings {
            shared_key: self.shared_key.clone(),
            username: self.username.clone().unwrap_or_default(),
            password: self.password.clone().unwrap_or_default(),
            hostname: self.client_hostname.clone(),
            tls: self.tls_ca.as_ref().map(|ca| TlsSettings {
                ca: ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                server_name: self.tls_server_name.clone(),
            }),
            connect_timeout: std::time::Duration::from_secs(30),
        })
        .map_err(|e| anyhow::anyhow!("--tls-*: {e}"))
    }
}

/// Connects once with `o` (the tools connect rarely; certificates are read
/// each time).
pub(crate) async fn connect(to: &str, o: &ClientOptions) -> anyhow::Result<Stream> {
    o.connector()?.connect(to).await
}
