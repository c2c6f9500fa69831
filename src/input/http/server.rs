//! The HTTP input as a stage: its socket (bound before data_dir is
//! touched), the accept loop (one permit of `forward.max_connections` per
//! connection, TLS when configured) and each connection's HTTP/1.1 loop
//! with keep-alive, pipelining, an idle timeout and a graceful stop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::HttpConfig;
use super::cors::Cors;
use super::request::handle;
use super::Context;
use crate::input::accept::{accept_until_shutdown, tls_handshake};
use crate::input::Limits;
use crate::metrics::Metrics;
use crate::wal::WalHandle;

/// How often an idle connection is looked at.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The bound socket and the TLS it speaks.
pub(crate) struct Socket {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Socket {
    /// Binds `http.listen` and loads `[http.tls]`.
    ///
    /// # Errors
    /// The port is in use or the certificates cannot be used.
    pub(crate) async fn bind(cfg: &HttpConfig) -> anyhow::Result<Self> {
        let tls = match &cfg.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::input::tls::server_config(t, "http.tls")?,
            )),
            None => None,
        };
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("http.listen: cannot listen on {}", cfg.listen))?;
        Ok(Self { tcp, tls })
    }
}

/// The running HTTP input.
pub(crate) struct Running {
    accept: JoinHandle<()>,
}

impl Running {
    /// Waits for the accept loop and the requests in flight to finish.
    pub(crate) async fn stopped(self) {
        let _ = self.accept.await;
    }
}

/// Starts accepting on the bound socket.
pub(crate) fn start(
    cfg: &HttpConfig,
    socket: Socket,
    wal: WalHandle,
    limits: &Limits,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Running {
    let ctx = Arc::new(Context {
        cors: Cors::new(&cfg.cors_allow_origins, cfg.cors_allow_credentials),
        cfg: cfg.clone(),
        wal,
        limits: limits.clone(),
        metrics: metrics.clone(),
    });
    tracing::info!(listen = %cfg.listen, tls = socket.tls.is_some(), "accepting HTTP events (POST /<tag>)");
    Running {
        accept: tokio::spawn(accept_loop(socket, ctx, shutdown.clone())),
    }
}

async fn accept_loop(socket: Socket, ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let Socket { tcp, tls } = socket;
    let events = ctx.metrics.http.clone();
    accept_until_shutdown(
        tcp,
        ctx.limits.connections.clone(),
        ctx.limits.max_connections,
        &events,
        shutdown.clone(),
        |stream, peer, permit| {
            let _ = stream.set_nodelay(true);
            let (ctx, sd, tls) = (ctx.clone(), shutdown.clone(), tls.clone());
            async move {
                ctx.metrics.http.connection_open(true);
                match tls {
                    None => serve(stream, peer, &ctx, sd).await,
                    Some(acceptor) => {
                        let timeout = ctx.cfg.tls.as_ref().map_or(
                            ctx.limits.request_timeout.min(Duration::from_secs(10)),
                            |t| t.handshake_timeout.0,
                        );
                        match tls_handshake(&acceptor, stream, timeout, sd.clone()).await {
                            Ok(s) => serve(s, peer, &ctx, sd).await,
                            Err(why) => ctx.metrics.http.tls_failed(peer, &why),
                        }
                    }
                }
                ctx.metrics.http.connection_open(false);
                drop(permit);
            }
        },
    )
    .await;
}

/// What the idle check reads: when the connection last read or wrote, and
/// whether a request is being answered.
#[derive(Default)]
struct Activity {
    last_ms: AtomicU64,
    requests: AtomicUsize,
}

/// One connection's HTTP/1.1 loop until the client closes, it idles past
/// `http.keepalive_timeout`, or weir stops (the request in flight is
/// answered first).
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    ctx: &Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let epoch = Instant::now();
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        epoch,
    });
    let service = {
        let (ctx, activity) = (ctx.clone(), activity.clone());
        service_fn(move |req| {
            let (ctx, activity) = (ctx.clone(), activity.clone());
            async move {
                activity.requests.fetch_add(1, Ordering::Relaxed);
                let r = handle(req, peer, &ctx).await;
                activity.requests.fetch_sub(1, Ordering::Relaxed);
                Ok::<_, Infallible>(r)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.request_timeout)
        .keep_alive(true)
        .pipeline_flush(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let idle_limit = ctx.cfg.keepalive_timeout.0;
    let mut closing = false;
    // Set when weir stops: a request still being sent then (a slow or
    // stalled body) is not waited for past it; its client resends it.
    let mut stop_by: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(IDLE_CHECK);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s), if stop_by.is_none() => {
                closing = true;
                stop_by = Some(tokio::time::Instant::now() + STOP_GRACE.min(ctx.limits.request_timeout));
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(stop_by.unwrap_or_else(tokio::time::Instant::now)), if stop_by.is_some() => {
                tracing::debug!(%peer, "HTTP connection closed at shutdown with a request unfinished (unacked)");
                return;
            }
            _ = tick.tick(), if !closing => {
                let idle_ms = (epoch.elapsed().as_millis() as u64)
                    .saturating_sub(activity.last_ms.load(Ordering::Relaxed));
                if activity.requests.load(Ordering::Relaxed) == 0
                    && Duration::from_millis(idle_ms) >= idle_limit
                {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// How long a stop waits for a request still in flight on a connection
/// (its body still arriving) before closing it unanswered.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A stream that notes when it last moved bytes.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.activity
            .last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
