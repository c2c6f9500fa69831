//! The accept loops (TCP, and a Unix socket). A failing accept backs off
//! instead of spinning; each connection runs in its own task so its errors
//! stay there; one permit per connection bounds them (`forward.max_connections`
//! counts both listeners).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

use super::connection::serve;
use super::settings::ConnectionSettings;
use crate::input::accept::{accept_until_shutdown, tls_handshake, Acceptor};
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
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Acceptor for Listener {
    type Conn = Accepted;
    async fn accept(&self) -> std::io::Result<(Accepted, SocketAddr)> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, p)| (Accepted::Tcp(s), p)),
            Listener::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| (Accepted::Unix(s), UNIX_PEER)),
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
    shutdown: watch::Receiver<bool>,
) {
    let limit = settings.max_connections;
    let events = metrics.forward.clone();
    accept_until_shutdown(
        listener,
        permits,
        limit,
        &events,
        shutdown.clone(),
        |accepted, peer, permit| {
            metrics.forward.accepted();
            let (m, wal, settings, sd) = (
                metrics.clone(),
                wal.clone(),
                settings.clone(),
                shutdown.clone(),
            );
            async move {
                m.forward.connection_open(true);
                match accepted {
                    Accepted::Tcp(stream) => {
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
            }
        },
    )
    .await;
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
            match tls_handshake(
                &acceptor,
                stream,
                settings.tls_handshake_timeout,
                sd.clone(),
            )
            .await
            {
                Ok(tls) => serve(tls, peer, wal, settings, m, sd).await,
                Err(why) => m.forward.tls_failed(peer, &why),
            }
        }
    }
}
