//! The accept loop. A failing accept backs off instead of spinning; each
//! connection runs in its own task so its errors stay there.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::backoff::Backoff;
use tokio::task::JoinSet;

use super::connection::serve;
use super::settings::ConnectionSettings;
use crate::metrics::Metrics;
use crate::wal::WalHandle;

/// Accepts until shutdown, then waits for open connections to finish their
/// request in flight.
pub async fn run(
    listener: TcpListener,
    wal: WalHandle,
    settings: Arc<ConnectionSettings>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    // Accept errors (EMFILE: out of descriptors) back off briefly.
    const ACCEPT_RETRY: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    let mut backoff = ACCEPT_RETRY;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_RETRY;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Refuse at once: the client retries elsewhere or later
                    // instead of waiting on a connection nobody reads.
                    metrics.forward.refused(peer, settings.max_connections);
                    drop(stream);
                    continue;
                };
                metrics.forward.connections_accepted.inc();
                let (m, wal, settings, sd) = (
                    metrics.clone(),
                    wal.clone(),
                    settings.clone(),
                    shutdown.clone(),
                );
                let _ = stream.set_nodelay(true);
                if settings.linger_zero {
                    let _ = stream.set_zero_linger();
                }
                conns.spawn(async move {
                    m.forward.connections_active.inc();
                    match settings.tls.clone() {
                        None => serve(stream, peer, wal, settings, m.clone(), sd).await,
                        Some(acceptor) => {
                            let timeout = settings.tls_handshake_timeout;
                            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve(tls, peer, wal, settings, m.clone(), sd).await,
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
                    m.forward.connections_active.dec();
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
