//! The client side of a forward connection for the load tools: TCP, then
//! optional TLS, then the optional shared-key handshake.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::input::forward::handshake::sha512_hex;
use crate::msgpack::{Cursor, FrameBuffer, Head};

#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// Shared key for the forward handshake.
    #[arg(long)]
    pub shared_key: Option<String>,
    /// Username and password for the handshake's user auth.
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
    /// Host name sent in PING.
    #[arg(long, default_value = "weir-loadgen")]
    pub client_hostname: String,
    /// Connect with TLS, trusting this CA file (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Server name to verify (default: the host of --to).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Client certificate (PEM) for servers that require mTLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// A connected stream, plain or TLS.
pub type Stream = Pin<Box<dyn AsyncReadWrite + Send>>;

pub trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

/// Connects to HOST:PORT, wraps in TLS and runs the handshake as the
/// options ask.
pub async fn connect(to: &str, o: &ClientOptions) -> anyhow::Result<Stream> {
    let tcp = TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    let _ = tcp.set_nodelay(true);
    let mut s: Stream = match &o.tls_ca {
        None => Box::pin(tcp),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("--tls-ca {}", ca.display()))?
            {
                roots.add(c?)?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
            let config = match (&o.tls_cert, &o.tls_key) {
                (Some(cert), Some(key)) => {
                    let chain = CertificateDer::pem_file_iter(cert)
                        .with_context(|| format!("--tls-cert {}", cert.display()))?
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("--tls-cert {}", cert.display()))?;
                    let key = PrivateKeyDer::from_pem_file(key)
                        .with_context(|| format!("--tls-key {}", key.display()))?;
                    builder.with_client_auth_cert(chain, key)?
                }
                _ => builder.with_no_client_auth(),
            };
            let name = match &o.tls_server_name {
                Some(n) => ServerName::try_from(n.clone())?,
                // The host part of HOST:PORT: a name or an address.
                None => match host_of(to).parse::<std::net::IpAddr>() {
                    Ok(ip) => ServerName::from(ip),
                    Err(_) => ServerName::try_from(host_of(to).to_string())?,
                },
            };
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            Box::pin(tls)
        }
    };
    if let Some(key) = &o.shared_key {
        handshake(&mut s, key, o).await?;
    }
    Ok(s)
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(to: &str) -> &str {
    let host = to.rsplit_once(':').map_or(to, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Reads until `frames` holds a complete object and returns it; `when` says
/// what was awaited, for the error.
async fn next_frame<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    frames: &mut FrameBuffer,
    when: &str,
) -> anyhow::Result<Bytes> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(frame) = frames.next_frame()? {
            return Ok(frame);
        }
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection {when}");
        frames.extend(&chunk[..n]);
    }
}

async fn read_object(s: &mut Stream) -> anyhow::Result<Bytes> {
    next_frame(s, &mut FrameBuffer::new(), "during the handshake").await
}

async fn handshake(s: &mut Stream, key: &str, o: &ClientOptions) -> anyhow::Result<()> {
    use crate::input::forward::messages;
    let helo = messages::parse_helo(&read_object(s).await?).map_err(anyhow::Error::msg)?;
    let salt = format!("{:032x}", rand::random::<u128>());
    let user = o.username.clone().unwrap_or_default();
    let password = o.password.clone().unwrap_or_default();
    let digest = sha512_hex(&[
        salt.as_bytes(),
        o.client_hostname.as_bytes(),
        &helo.nonce,
        key.as_bytes(),
    ]);
    let password_digest = if user.is_empty() {
        String::new()
    } else {
        sha512_hex(&[&helo.auth, user.as_bytes(), password.as_bytes()])
    };
    let ping = messages::ping(&o.client_hostname, &salt, &digest, &user, &password_digest);
    s.write_all(&ping).await?;
    match messages::parse_pong(&read_object(s).await?).map_err(anyhow::Error::msg)? {
        Ok(()) => Ok(()),
        Err(reason) => anyhow::bail!("handshake refused: {reason}"),
    }
}

/// Reads the server's next `{"ack": chunk}` and returns the chunk's bytes.
/// Keep one `frames` per connection: it holds bytes read past a reply.
pub async fn read_ack<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    frames: &mut FrameBuffer,
) -> anyhow::Result<Vec<u8>> {
    let reply = next_frame(s, frames, "before acking").await?;
    ack_of(&reply)?
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow::anyhow!("the server replied with something other than an ack"))
}

/// The chunk id of a complete `{"ack": chunk}` reply; `None` for any other
/// object (HELO, PONG).
pub fn ack_of(reply: &[u8]) -> Result<Option<&[u8]>, crate::msgpack::MsgpackError> {
    let mut c = Cursor::new(reply);
    let Head::Map(pairs) = c.head()? else {
        return Ok(None);
    };
    for _ in 0..pairs {
        match c.bytes()? {
            Some(b"ack") => return c.bytes(),
            Some(_) => {
                c.skip()?;
            }
            None => {
                c.skip()?;
                c.skip()?;
            }
        }
    }
    Ok(None)
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
