//! The accept loop every input shares: a failing accept (out of file
//! descriptors) backs off instead of spinning; a connection past
//! `forward.max_connections` (one pool for every listener) is closed at
//! once, so its client retries elsewhere or later instead of waiting on a
//! connection nobody reads; each connection runs in its own task, so its
//! errors stay there; at shutdown the loop stops accepting and waits for
//! open connections to finish their request in flight.
//!
//! # Memory
//! One task per open connection, at most `forward.max_connections`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::backoff::Backoff;

/// Accept errors back off from 5 ms to 1 s.
const ACCEPT_RETRY: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));

/// Where connections come from.
pub(crate) trait Acceptor: Send {
    type Conn: Send + 'static;
    /// The next connection and the address it counts as.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Conn, SocketAddr)> {
        tokio::net::TcpListener::accept(self).await
    }
}

/// What an input counts and logs of its accept loop (one event each).
pub(crate) trait AcceptEvents: Send + Sync {
    fn accept_failed(&self, error: &io::Error);
    fn refused(&self, peer: SocketAddr, limit: usize);
}

/// Accepts until `shutdown`, running `serve` for each connection that gets
/// a permit (held for the connection's life); then waits for them.
pub(crate) async fn accept_until_shutdown<A, F, Fut>(
    acceptor: A,
    permits: Arc<Semaphore>,
    limit: usize,
    events: &dyn AcceptEvents,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    A: Acceptor,
    F: Fn(A::Conn, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_RETRY;
    loop {
        let accepted = tokio::select! {
            a = acceptor.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                events.accept_failed(&e);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff = ACCEPT_RETRY;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            events.refused(peer, limit);
            continue;
        };
        conns.spawn(serve(conn, peer, permit));
    }
    drop(acceptor);
    while conns.join_next().await.is_some() {}
}

/// A TLS handshake within `timeout`, given up when weir stops (nothing of
/// the client's is held yet); the error says why it failed.
pub(crate) async fn tls_handshake<S>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio_rustls::server::TlsStream<S>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::select! {
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("handshake timed out".into()),
        },
        _ = shutdown.wait_for(|s| *s) => Err("weir is stopping".into()),
    }
}

impl AcceptEvents for crate::metrics::ForwardMetrics {
    fn accept_failed(&self, error: &io::Error) {
        crate::metrics::ForwardMetrics::accept_failed(self, error);
    }
    fn refused(&self, peer: SocketAddr, limit: usize) {
        crate::metrics::ForwardMetrics::refused(self, peer, limit);
    }
}

impl AcceptEvents for crate::metrics::HttpMetrics {
    fn accept_failed(&self, error: &io::Error) {
        crate::metrics::HttpMetrics::accept_failed(self, error);
    }
    fn refused(&self, peer: SocketAddr, limit: usize) {
        crate::metrics::HttpMetrics::refused(self, peer, limit);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// Hands out what the test queued: errors and connections (numbers).
    struct Queue(tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<io::Result<u32>>>);

    impl Acceptor for Queue {
        type Conn = u32;
        async fn accept(&self) -> io::Result<(u32, SocketAddr)> {
            match self.0.lock().await.recv().await {
                Some(r) => r.map(|n| (n, SocketAddr::from(([127, 0, 0, 1], 1)))),
                None => std::future::pending().await,
            }
        }
    }

    #[derive(Default)]
    struct Seen {
        failed: AtomicUsize,
        refused: Mutex<Vec<usize>>,
    }

    impl AcceptEvents for Seen {
        fn accept_failed(&self, _error: &io::Error) {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        fn refused(&self, _peer: SocketAddr, limit: usize) {
            self.refused.lock().unwrap().push(limit);
        }
    }

    #[tokio::test]
    async fn errors_back_off_connections_past_the_bound_are_refused_and_shutdown_waits() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let (release_tx, release) = watch::channel(false);
        let served = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Seen::default());
        tx.send(Err(io::Error::other("EMFILE"))).unwrap();
        tx.send(Ok(1)).unwrap();
        tx.send(Ok(2)).unwrap(); // the one permit is taken by 1
        let (served2, seen2) = (served.clone(), seen.clone());
        let task = tokio::spawn(async move {
            accept_until_shutdown(
                Queue(tokio::sync::Mutex::new(rx)),
                Arc::new(Semaphore::new(1)),
                1,
                seen2.as_ref(),
                stop,
                |n, _peer, permit| {
                    let (served, mut release) = (served2.clone(), release.clone());
                    async move {
                        served.lock().unwrap().push(n);
                        let _ = release.wait_for(|r| *r).await;
                        drop(permit);
                    }
                },
            )
            .await
        });
        while seen.refused.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.failed.load(Ordering::SeqCst), 1);
        assert_eq!(*seen.refused.lock().unwrap(), vec![1]);
        assert_eq!(*served.lock().unwrap(), vec![1]);
        // Shutdown stops accepting but waits for the open connection.
        stop_tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "waits for its connection");
        release_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends once its connections did")
            .unwrap();
    }
}
