//! `weir capture`: a transparent forward proxy that records every request a
//! client sends (with its arrival time and connection) while passing bytes
//! both ways untouched, so clients still get the upstream's acks, HELO and
//! PONG. Works in front of any forward server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::format::Kind;
use super::writer::{Capture, Target};
use crate::metrics::Metrics;
use crate::msgpack::{Cursor, FrameScanner, Head};

/// Most bytes of one unfinished request held for recording; a larger one is
/// still passed through but recording stops for that connection.
const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Address to accept clients on, e.g. 0.0.0.0:24224.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The forward server to pass traffic to (host:port).
    #[arg(long)]
    pub upstream: String,
    /// Capture file to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// On SIGINT/SIGTERM, wait this long for open connections to finish.
    #[arg(long, default_value = "5s")]
    pub drain_timeout: humantime::Duration,
}

#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Runs the proxy until `shutdown` resolves; returns a one-line summary.
pub async fn run(
    args: CaptureArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let (capture, writer) = Capture::start(Target::File(args.out.clone()), Metrics::new())
        .with_context(|| format!("--out {}", args.out.display()))?;
    eprintln!(
        "weir capture: listening on {}, forwarding to {}, writing {}",
        listener.local_addr()?,
        args.upstream,
        args.out.display()
    );
    let counts = Arc::new(Counts::default());
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((client, peer)) => {
                    let (capture, upstream, counts) =
                        (capture.clone(), args.upstream.clone(), counts.clone());
                    conns.spawn(async move {
                        if let Err(e) = proxy(client, peer, &upstream, &capture, &counts).await {
                            eprintln!("weir capture: {peer}: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("weir capture: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from(args.drain_timeout), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!(
            "weir capture: {} connections still open after --drain-timeout; closing them",
            conns.len()
        );
        conns.shutdown().await;
    }
    drop(capture);
    tokio::task::spawn_blocking(move || writer.finish()).await?;
    Ok(format!(
        "weir capture: {} connections, {} requests, {} bytes recorded in {}",
        counts.connections.load(Ordering::Relaxed),
        counts.requests.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
        args.out.display()
    ))
}

/// True for the handshake's PING, which a replay must not resend (it
/// performs its own handshake).
fn is_ping(frame: &[u8]) -> bool {
    let mut c = Cursor::new(frame);
    matches!(c.head(), Ok(Head::Array(6))) && matches!(c.bytes(), Ok(Some(b"PING")))
}

async fn proxy(
    client: TcpStream,
    peer: SocketAddr,
    upstream: &str,
    capture: &Capture,
    counts: &Counts,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to upstream {upstream}"))?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let conn = capture.conn_id();
    counts.connections.fetch_add(1, Ordering::Relaxed);
    capture
        .record(Kind::Open, conn, Bytes::from(peer.to_string()))
        .await;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let downstream = tokio::spawn(async move {
        let r = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
        r
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = FrameScanner::new();
    let mut recording = true;
    let mut read = [0u8; 64 * 1024];
    let result: anyhow::Result<()> = async {
        loop {
            let n = from_client.read(&mut read).await?;
            if n == 0 {
                break;
            }
            to_server.write_all(&read[..n]).await?;
            if !recording {
                continue;
            }
            buf.extend_from_slice(&read[..n]);
            loop {
                match scanner.scan(&buf) {
                    Ok(Some(len)) => {
                        let frame = buf.split_to(len).freeze();
                        scanner.reset();
                        if !is_ping(&frame) {
                            counts.requests.fetch_add(1, Ordering::Relaxed);
                            counts.bytes.fetch_add(len as u64, Ordering::Relaxed);
                            capture.record(Kind::Request, conn, frame).await;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("weir capture: {peer}: not msgpack ({e}); passing bytes through without recording");
                        recording = false;
                        buf = BytesMut::new();
                        break;
                    }
                }
            }
            if buf.len() > MAX_FRAME {
                eprintln!("weir capture: {peer}: request over {MAX_FRAME} bytes; no longer recording this connection");
                recording = false;
                buf = BytesMut::new();
            }
        }
        Ok(())
    }
    .await;
    let _ = to_server.shutdown().await;
    // The upstream sends its last acks, then closes after our FIN.
    let _ = downstream.await;
    capture.record(Kind::Close, conn, Bytes::new()).await;
    result
}
