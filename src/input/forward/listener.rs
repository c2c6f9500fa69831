//! The accept loops (TCP, and a Unix socket). A failing accept backs off
//! instead of spinning; each connection runs in its own task so its errors
//! stay there; one permit per connection bounds them (`forward.max_connections`
//! counts both listeners).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::connection::serve;
use super::settings::ConnectionSettings;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::wal::WalHandle;

/// What a connection on the Unix socket counts as for client rules,
/// `source_address_key` and logs: the local host.
pub(crate) const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Where connections come from.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// One accepted connection.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, p)| Accepted::Tcp(s, p)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

/// Accepts until shutdown, then waits for open connections to finish their
/// request in flight.
pub(crate) async fn run(
    listener: Listener,
    wal: WalHandle,
    settings: Arc<ConnectionSettings>,
    permits: Arc<Semaphore>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // Accept errors (EMFILE: out of descriptors) back off briefly.
    const ACCEPT_RETRY: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    let mut backoff = ACCEPT_RETRY;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                metrics.forward.accept_failed(&e);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff = ACCEPT_RETRY;
        let peer = match &accepted {
            Accepted::Tcp(_, p) => *p,
            Accepted::Unix(_) => UNIX_PEER,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Refuse at once: the client retries elsewhere or later instead
            // of waiting on a connection nobody reads.
            metrics.forward.refused(peer, settings.max_connections);
            continue;
        };
        metrics.forward.accepted();
        let (m, wal, settings, sd) = (
            metrics.clone(),
            wal.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        conns.spawn(async move {
            m.forward.connection_open(true);
            match accepted {
                Accepted::Tcp(stream, peer) => {
                    let _ = stream.set_nodelay(true);
                    if settings.linger_zero {
                        let _ = stream.set_zero_linger();
                    }
                    serve_tcp(stream, peer, wal, settings, m.clone(), sd).await;
                }
                // No TLS on the local socket: the file's mode is its guard.
                Accepted::Unix(stream) => {
                    serve(stream, UNIX_PEER, wal, settings, m.clone(), sd).await
                }
            }
            m.forward.connection_open(false);
            drop(permit);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// A TCP connection, through TLS when it is configured.
async fn serve_tcp(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    wal: WalHandle,
    settings: Arc<ConnectionSettings>,
    m: Metrics,
    sd: watch::Receiver<bool>,
) {
    match settings.tls.clone() {
        None => serve(stream, peer, wal, settings, m, sd).await,
        Some(acceptor) => {
            let timeout = settings.tls_handshake_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, peer, wal, settings, m, sd).await,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "TLS handshake timed out".to_string(),
                    };
                    m.forward.tls_failed(peer, &why);
                }
            }
        }
    }
}
