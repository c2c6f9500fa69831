//! `weir capture`: a transparent forward proxy that records every request a
//! client sends (with its arrival time and connection) while passing bytes
//! both ways untouched, so clients still get the upstream's acks, HELO and
//! PONG. Works in front of any forward server. Like the load tools it
//! reports events/s and the upstream's ack latency (request → ack).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::capture::Kind;
use crate::capture::{Capture, Target};
use crate::client::ack_of;
use crate::metrics::Metrics;
use crate::msgpack::{Cursor, FrameBuffer, Head};
use crate::tools::report::{Report, Totals};
use crate::tools::rewrite::inspect;

/// Most bytes of one unfinished request held for recording; a larger one is
/// still passed through but recording stops for that connection.
const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Address to accept clients on, e.g. 0.0.0.0:24224.
    #[arg(long)]
    pub(crate) listen: SocketAddr,
    /// The forward server to pass traffic to (host:port).
    #[arg(long)]
    pub(crate) upstream: String,
    /// Capture file to write (replaced if it exists).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// On SIGINT/SIGTERM, wait this long for open connections to finish.
    #[arg(long, default_value = "5s")]
    pub(crate) drain_timeout: humantime::Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What all connections count into.
struct Stats {
    connections: AtomicU64,
    totals: Arc<Totals>,
    latencies: Mutex<Histogram<u64>>,
}

/// Requests waiting for the upstream's ack: chunk id → (sent, events).
type Pending = Mutex<HashMap<Vec<u8>, (Instant, u64)>>;

/// Runs the proxy until `shutdown` resolves; returns the traffic report and
/// a line saying what was recorded where.
pub async fn run(
    args: CaptureArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(Report, String)> {
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
    let stats = Arc::new(Stats {
        connections: AtomicU64::new(0),
        totals: Arc::new(Totals::default()),
        latencies: Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    });
    let started = Instant::now();
    let progress = crate::tools::report::spawn_progress(stats.totals.clone(), started, args.json);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((client, peer)) => {
                    let (capture, upstream, stats) =
                        (capture.clone(), args.upstream.clone(), stats.clone());
                    conns.spawn(async move {
                        if let Err(e) = proxy(client, peer, &upstream, &capture, &stats).await {
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
    progress.abort();
    let t = &stats.totals;
    let summary = format!(
        "weir capture: {} connections, {} requests, {} bytes recorded in {}",
        stats.connections.load(Ordering::Relaxed),
        t.requests.load(Ordering::Relaxed),
        t.bytes.load(Ordering::Relaxed),
        args.out.display()
    );
    let h = stats
        .latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock"))?
        .clone();
    Ok((Report::new(t, started.elapsed(), &h), summary))
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
    stats: &Arc<Stats>,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to upstream {upstream}"))?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let conn = capture.conn_id();
    stats.connections.fetch_add(1, Ordering::Relaxed);
    capture
        .record(Kind::Open, conn, Bytes::from(peer.to_string()))
        .await;
    let (mut from_client, mut to_client) = client.into_split();
    let (from_server, mut to_server) = server.into_split();
    let pending: Arc<Pending> = Arc::default();
    let downstream = {
        let (stats, pending) = (stats.clone(), pending.clone());
        tokio::spawn(async move {
            let r = pass_acks(from_server, &mut to_client, &stats, &pending).await;
            let _ = to_client.shutdown().await;
            r
        })
    };
    let mut requests = FrameBuffer::new();
    let mut recording = true;
    let mut read = [0u8; 64 * 1024];
    let t = &stats.totals;
    let result: anyhow::Result<()> = async {
        loop {
            let n = from_client.read(&mut read).await?;
            if n == 0 {
                break;
            }
            // Frames are counted (and their chunks noted) before the bytes
            // go upstream, so an ack can never beat its request here.
            let mut frames = Vec::new();
            if recording {
                requests.extend(&read[..n]);
                loop {
                    match requests.next_frame() {
                        Ok(Some(frame)) => {
                            if !is_ping(&frame) {
                                note_request(&frame, t, &pending);
                                frames.push(frame);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("weir capture: {peer}: not msgpack ({e}); passing bytes through without recording");
                            recording = false;
                            requests = FrameBuffer::new();
                            break;
                        }
                    }
                }
            }
            to_server.write_all(&read[..n]).await?;
            for frame in frames {
                capture.record(Kind::Request, conn, frame).await;
            }
            if requests.pending() > MAX_FRAME {
                eprintln!("weir capture: {peer}: request over {MAX_FRAME} bytes; no longer recording this connection");
                recording = false;
                requests = FrameBuffer::new();
            }
        }
        Ok(())
    }
    .await;
    let _ = to_server.shutdown().await;
    // The upstream sends its last acks, then closes after our FIN.
    let _ = downstream.await;
    if let Ok(w) = pending.lock() {
        t.pending.fetch_sub(w.len() as u64, Ordering::Relaxed);
    }
    capture.record(Kind::Close, conn, Bytes::new()).await;
    result
}

/// Counts one request and remembers its chunk id to time the ack.
fn note_request(frame: &[u8], t: &Totals, pending: &Pending) {
    let (events, chunk) = inspect(frame);
    t.requests.fetch_add(1, Ordering::Relaxed);
    t.events.fetch_add(events, Ordering::Relaxed);
    t.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
    if let Some(chunk) = chunk {
        if let Ok(mut w) = pending.lock() {
            w.insert(chunk.into_bytes(), (Instant::now(), events));
            t.pending.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies the upstream's replies to the client, timing each ack against
/// the request that asked for it.
async fn pass_acks(
    mut from_server: OwnedReadHalf,
    to_client: &mut OwnedWriteHalf,
    stats: &Stats,
    pending: &Pending,
) -> std::io::Result<()> {
    let mut replies = FrameBuffer::new();
    let mut parsing = true;
    let mut read = [0u8; 16 * 1024];
    loop {
        let n = from_server.read(&mut read).await?;
        if n == 0 {
            return Ok(());
        }
        to_client.write_all(&read[..n]).await?;
        if !parsing {
            continue;
        }
        replies.extend(&read[..n]);
        loop {
            match replies.next_frame() {
                Ok(Some(reply)) => {
                    let Ok(Some(chunk)) = ack_of(&reply) else {
                        continue;
                    };
                    let Some((sent, events)) =
                        pending.lock().ok().and_then(|mut w| w.remove(chunk))
                    else {
                        continue;
                    };
                    let t = &stats.totals;
                    t.pending.fetch_sub(1, Ordering::Relaxed);
                    t.acked_events.fetch_add(events, Ordering::Relaxed);
                    if let Ok(mut h) = stats.latencies.lock() {
                        let _ = h.record((sent.elapsed().as_micros() as u64).max(1));
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // Not msgpack: keep passing bytes, stop timing acks.
                    parsing = false;
                    replies = FrameBuffer::new();
                    break;
                }
            }
        }
    }
}
