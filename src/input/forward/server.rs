//! The forward input as a stage: its sockets (bound before data_dir is
//! touched, so a port in use leaves it as it was), its connection settings
//! built from `[forward]`, and its start and stop.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::{unix_mode_bits, ForwardConfig};
use super::decode::DecodeLimits;
use super::listener::Listener;
use super::ConnectionSettings;
use crate::input::Limits;
use crate::metrics::Metrics;
use crate::wal::WalHandle;

/// The bound sockets: TCP, UDP heartbeats on the same port, and the Unix
/// socket when `forward.unix_path` is set.
pub(crate) struct Sockets {
    tcp: TcpListener,
    udp: UdpSocket,
    unix: Option<(UnixListener, PathBuf)>,
}

impl Sockets {
    /// Binds them all; nothing is left bound when one fails.
    ///
    /// # Errors
    /// A port in use, an address that is not this host's, a Unix socket
    /// another process serves or a path that is not a socket.
    pub(crate) async fn bind(cfg: &ForwardConfig) -> anyhow::Result<Self> {
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("forward.listen: cannot listen on {}", cfg.listen))?;
        let udp = UdpSocket::bind(cfg.listen).await.with_context(|| {
            format!(
                "forward.listen: cannot bind UDP {} for heartbeats",
                cfg.listen
            )
        })?;
        let unix = match &cfg.unix_path {
            Some(path) => Some((bind_unix(path, &cfg.unix_mode)?, path.clone())),
            None => None,
        };
        Ok(Self { tcp, udp, unix })
    }
}

impl Sockets {
    /// Whether a Unix socket is bound too.
    pub(crate) fn has_unix(&self) -> bool {
        self.unix.is_some()
    }
}

/// Binds the Unix socket at `path`: a socket nobody answers on (left by a
/// weir that was killed) is replaced; one that answers, or any other file,
/// is an error and is left alone.
fn bind_unix(path: &Path, mode: &str) -> anyhow::Result<UnixListener> {
    let key = "forward.unix_path";
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!("{key}: {} is served by another process", path.display());
            }
            std::fs::remove_file(path).with_context(|| {
                format!("{key}: cannot remove the stale socket {}", path.display())
            })?;
            tracing::info!(path = %path.display(), "replaced a stale Unix socket");
        }
        Ok(_) => anyhow::bail!(
            "{key}: {} exists and is not a socket; weir does not replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{key}: {}", path.display())),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("{key}: cannot listen on {}", path.display()))?;
    let bits = unix_mode_bits(mode).unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits))
        .with_context(|| format!("forward.unix_mode: cannot set it on {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(UnixListener::from_std(l)?)
}

/// What one connection works with, from `[forward]`.
pub(crate) fn settings(
    cfg: &ForwardConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    capture: Option<crate::capture::Capture>,
    limits: &Limits,
) -> ConnectionSettings {
    ConnectionSettings {
        max_buffer_bytes: cfg.max_buffer_bytes.as_usize(),
        limits: DecodeLimits {
            max_decompressed_bytes: cfg.max_decompressed_bytes.as_usize(),
        },
        idle_timeout: cfg.idle_timeout.0,
        max_connections: cfg.max_connections,
        security: cfg.security.clone(),
        request_timeout: cfg.request_timeout.0,
        deny_keepalive: cfg.deny_keepalive,
        linger_zero: cfg.linger_zero,
        tag_prefix: cfg.tag_prefix.as_bytes().to_vec(),
        source_address_key: cfg.source_address_key.clone(),
        source_hostname_key: cfg.source_hostname_key.clone(),
        chunk_size_warn_limit: cfg.chunk_size_warn_limit.map_or(0, |b| b.as_usize()),
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        tls_handshake_timeout: cfg
            .tls
            .as_ref()
            .map_or(Duration::from_secs(10), |t| t.handshake_timeout.0),
        capture,
        budget: limits.budget.clone(),
    }
}

/// The running forward input.
pub(crate) struct Running {
    accept: Vec<JoinHandle<()>>,
    heartbeat: JoinHandle<()>,
    capture_writer: Option<crate::capture::Writer>,
    unix_path: Option<PathBuf>,
}

impl Running {
    /// Waits for the accept loops (stopped by the shutdown signal) and
    /// their connections' requests in flight, then closes the capture file
    /// and removes the Unix socket.
    pub(crate) async fn stopped(self) {
        for a in self.accept {
            let _ = a.await;
        }
        if let Some(w) = self.capture_writer {
            let _ = tokio::task::spawn_blocking(move || w.finish()).await;
        }
        let _ = self.heartbeat.await;
        if let Some(p) = self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts accepting on the bound sockets.
///
/// # Errors
/// `forward.capture_dir` cannot be written.
pub(crate) fn start(
    cfg: &ForwardConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    sockets: Sockets,
    wal: WalHandle,
    limits: &Limits,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let capture = match &cfg.capture_dir {
        None => None,
        Some(dir) => {
            let target = crate::capture::Target::Rotating {
                dir: dir.clone(),
                max_file_bytes: cfg.capture_max_file_bytes.0,
                max_files: cfg.capture_max_files,
            };
            let (c, writer) =
                crate::capture::Capture::start(target, metrics.clone()).map_err(|e| {
                    anyhow::anyhow!(
                        "forward.capture_dir: cannot write to {}: {e}",
                        dir.display()
                    )
                })?;
            tracing::info!(dir = %dir.display(), "capturing accepted requests");
            Some((c, writer))
        }
    };
    let (capture, capture_writer) = capture.unzip();
    let settings = Arc::new(settings(cfg, tls, capture, limits));
    let heartbeat = tokio::spawn(super::heartbeat::run(sockets.udp, shutdown.clone()));
    let mut accept = vec![tokio::spawn(super::listener::run(
        Listener::Tcp(sockets.tcp),
        wal.clone(),
        settings.clone(),
        limits.connections.clone(),
        metrics.clone(),
        shutdown.clone(),
    ))];
    let mut unix_path = None;
    if let Some((unix, path)) = sockets.unix {
        tracing::info!(path = %path.display(), "accepting forward traffic on a Unix socket");
        accept.push(tokio::spawn(super::listener::run(
            Listener::Unix(unix),
            wal,
            settings,
            limits.connections.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
        unix_path = Some(path);
    }
    Ok(Running {
        accept,
        heartbeat,
        capture_writer,
        unix_path,
    })
}
