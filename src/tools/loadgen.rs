//! `weir loadgen`: synthetic forward traffic against any forward server
//! (weir, Fluentd, Fluent Bit), with ack latency measured per request; also
//! JSON forward messages and HTTP NDJSON posts (`--mode json`, `http`,
//! `http-gzip`) against an `in_http`-style input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::options::{self, ClientOptions};
use super::report::{Report, Totals};
use crate::client;
use crate::input::{compress, Compression};
use crate::msgpack::FrameBuffer;

/// Which forward mode to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LoadMode {
    Message,
    Forward,
    Packed,
    Gzip,
    Zstd,
    /// Forward mode as JSON, JSON acks.
    Json,
    /// HTTP POST `/<tag>` of NDJSON; "acked" is a 2xx.
    Http,
    /// The same, gzip-compressed.
    HttpGzip,
}

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Forward server, HOST:PORT (e.g. 127.0.0.1:24224, weir.logging.svc:24224).
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value = "packed")]
    pub(crate) mode: LoadMode,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Events per request (Message mode sends one per request).
    #[arg(long, default_value_t = 1000)]
    pub(crate) events_per_request: usize,
    /// Approximate bytes of each record.
    #[arg(long, default_value_t = 200)]
    pub(crate) record_bytes: usize,
    /// Comma-separated tags, used in turn.
    #[arg(long, default_value = "loadgen.test")]
    pub(crate) tags: String,
    /// Turn each tag into this many, `{tag}.0` … `{tag}.{N-1}` (as Fluent
    /// Bit's per-container tags do on Kubernetes).
    #[arg(long, default_value_t = 1)]
    pub(crate) tag_count: usize,
    /// Events per second over all connections (0: as fast as acks allow).
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Stop after this long ("30s").
    #[arg(long, default_value = "10s")]
    pub(crate) duration: humantime::Duration,
    /// Stop after this many requests per connection (0: no limit), or at
    /// `--duration`, whichever comes first.
    #[arg(long, default_value_t = 0)]
    pub(crate) requests: u64,
    /// Content-Type of `--mode http` bodies (NDJSON either way): Fluent Bit's
    /// in_http wants application/json for concatenated objects.
    #[arg(long, default_value = "application/x-ndjson")]
    pub(crate) http_content_type: String,
    /// Do not ask for acks (fire and forget; no latency).
    #[arg(long)]
    pub(crate) no_ack: bool,
    #[command(flatten)]
    pub(crate) client: ClientOptions,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One record of about `bytes` bytes (msgpack map).
fn record(i: u64, bytes: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(bytes + 32);
    let _ = rmp::encode::write_map_len(&mut b, 3);
    let _ = rmp::encode::write_str(&mut b, "seq");
    let _ = rmp::encode::write_uint(&mut b, i);
    let _ = rmp::encode::write_str(&mut b, "level");
    let _ = rmp::encode::write_str(&mut b, if i.is_multiple_of(10) { "warn" } else { "info" });
    let _ = rmp::encode::write_str(&mut b, "message");
    let filler = bytes.saturating_sub(30).max(1);
    let text: String = (0..filler)
        .map(|k| (b'a' + ((i as usize * 7 + k * 13) % 26) as u8) as char)
        .collect();
    let _ = rmp::encode::write_str(&mut b, &text);
    b
}

/// Encodes one request of `n` events in `mode`, asking for an ack with `chunk`.
pub(crate) fn build_request(
    mode: LoadMode,
    tag: &str,
    n: usize,
    first: u64,
    record_bytes: usize,
    chunk: Option<&str>,
) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut time = vec![0xd7, 0x00];
    time.extend_from_slice(&(now.as_secs() as u32).to_be_bytes());
    time.extend_from_slice(&now.subsec_nanos().to_be_bytes());
    let mut options = Vec::new();
    let mut entries = Vec::new();
    let mut b = Vec::new();
    let n = if mode == LoadMode::Message {
        1
    } else {
        n.max(1)
    };
    for i in 0..n as u64 {
        if mode != LoadMode::Message {
            entries.push(0x92);
        }
        entries.extend_from_slice(&time);
        entries.extend(record(first + i, record_bytes));
    }
    let opt_count =
        usize::from(chunk.is_some()) + usize::from(matches!(mode, LoadMode::Gzip | LoadMode::Zstd));
    let _ = rmp::encode::write_map_len(&mut options, opt_count as u32);
    if let Some(c) = chunk {
        let _ = rmp::encode::write_str(&mut options, "chunk");
        let _ = rmp::encode::write_str(&mut options, c);
    }
    match mode {
        LoadMode::Message => {
            let _ = rmp::encode::write_array_len(&mut b, 4);
            let _ = rmp::encode::write_str(&mut b, tag);
            b.extend_from_slice(&entries);
        }
        // JSON and HTTP requests are built in `wire.rs`; as msgpack they
        // are Forward mode.
        LoadMode::Forward | LoadMode::Json | LoadMode::Http | LoadMode::HttpGzip => {
            let _ = rmp::encode::write_array_len(&mut b, 3);
            let _ = rmp::encode::write_str(&mut b, tag);
            let _ = rmp::encode::write_array_len(&mut b, n as u32);
            b.extend_from_slice(&entries);
        }
        LoadMode::Packed => {
            let _ = rmp::encode::write_array_len(&mut b, 3);
            let _ = rmp::encode::write_str(&mut b, tag);
            let _ = rmp::encode::write_bin(&mut b, &entries);
        }
        LoadMode::Gzip | LoadMode::Zstd => {
            let (kind, name) = if mode == LoadMode::Gzip {
                (Compression::Gzip, "gzip")
            } else {
                (Compression::Zstd, "zstd")
            };
            let _ = rmp::encode::write_str(&mut options, "compressed");
            let _ = rmp::encode::write_str(&mut options, name);
            let _ = rmp::encode::write_array_len(&mut b, 3);
            let _ = rmp::encode::write_str(&mut b, tag);
            let _ = rmp::encode::write_bin(&mut b, &compress(kind, &entries));
        }
    }
    b.extend_from_slice(&options);
    b
}

/// Runs the load and returns the report.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    let totals = Arc::new(Totals::default());
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    let tags: Vec<String> = args
        .tags
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .flat_map(|t| -> Vec<String> {
            match args.tag_count {
                0 | 1 => vec![t],
                n => (0..n).map(|i| format!("{t}.{i}")).collect(),
            }
        })
        .collect();
    anyhow::ensure!(!tags.is_empty(), "--tags: give at least one tag");
    let tags = Arc::new(TagCycle {
        tags,
        next: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from(args.duration);
    // Chunk ids are unique across runs too: servers that de-duplicate
    // (weir does) would otherwise ack a repeat without storing it.
    let chunk_ids = Arc::new(AtomicU64::new(0));
    let run_id: u64 = rand::random();
    let per_conn_rate = if args.rate == 0 {
        0.0
    } else {
        args.rate as f64 / args.connections.max(1) as f64
    };
    let progress = super::report::spawn_progress(totals.clone(), started, args.json);
    let mut tasks = Vec::new();
    for k in 0..args.connections {
        let (args, totals, latencies, tags, chunk_ids) = (
            args.clone(),
            totals.clone(),
            latencies.clone(),
            tags.clone(),
            chunk_ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = match options::connect(&args.to, &args.client).await {
                Ok(s) => s,
                Err(e) => {
                    totals.failed_connections.fetch_add(1, Ordering::Relaxed);
                    eprintln!("loadgen: connection {k}: {e:#}");
                    return;
                }
            };
            let run = Run {
                args: &args,
                per_conn_rate,
                deadline,
                tags: &tags,
                totals: &totals,
                latencies: &latencies,
                chunk_ids: &chunk_ids,
                run_id,
            };
            drive(stream, &run).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let elapsed = started.elapsed();
    let h = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock"))?
        .clone();
    Ok(Report::new(&totals, elapsed, &h))
}

/// What every connection of one load run shares.
#[derive(Clone, Copy)]
struct Run<'a> {
    args: &'a LoadgenArgs,
    per_conn_rate: f64,
    deadline: Instant,
    tags: &'a TagCycle,
    totals: &'a Totals,
    latencies: &'a Mutex<Histogram<u64>>,
    chunk_ids: &'a AtomicU64,
    run_id: u64,
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, run: &Run<'_>) {
    let Run {
        args,
        per_conn_rate,
        deadline,
        tags,
        totals,
        latencies,
        chunk_ids,
        run_id,
    } = *run;
    let per_request = if args.mode == LoadMode::Message {
        1
    } else {
        args.events_per_request.max(1)
    };
    let interval =
        (per_conn_rate > 0.0).then(|| Duration::from_secs_f64(per_request as f64 / per_conn_rate));
    let mut next_at = Instant::now();
    let mut n = 0u64;
    let mut replies = FrameBuffer::new();
    let mut text_replies = bytes::BytesMut::new();
    while Instant::now() < deadline && (args.requests == 0 || n < args.requests) {
        if let Some(iv) = interval {
            let now = Instant::now();
            if next_at > now {
                tokio::time::sleep(next_at - now).await;
            }
            next_at += iv;
        }
        // An HTTP request always has an answer to wait for.
        let acked = !args.no_ack || matches!(args.mode, LoadMode::Http | LoadMode::HttpGzip);
        let chunk = acked.then(|| {
            format!(
                "{run_id:016x}{:016x}",
                chunk_ids.fetch_add(1, Ordering::Relaxed)
            )
        });
        let tag = tags.next();
        let first = n * per_request as u64;
        let req = match args.mode {
            LoadMode::Json => super::wire::json_forward(
                tag,
                per_request,
                first,
                args.record_bytes,
                chunk.as_deref(),
            ),
            LoadMode::Http | LoadMode::HttpGzip => {
                let body = super::wire::ndjson(per_request, first, args.record_bytes);
                let gzip = args.mode == LoadMode::HttpGzip;
                let body = if gzip {
                    compress(Compression::Gzip, &body)
                } else {
                    body
                };
                super::wire::http_post(tag, &body, gzip, &args.http_content_type)
            }
            _ => build_request(
                args.mode,
                tag,
                per_request,
                first,
                args.record_bytes,
                chunk.as_deref(),
            ),
        };
        let sent_at = Instant::now();
        if s.write_all(&req).await.is_err() {
            totals.failed_requests.fetch_add(1, Ordering::Relaxed);
            return;
        }
        totals.requests.fetch_add(1, Ordering::Relaxed);
        totals
            .events
            .fetch_add(per_request as u64, Ordering::Relaxed);
        totals.bytes.fetch_add(req.len() as u64, Ordering::Relaxed);
        if let Some(c) = chunk {
            totals.pending.fetch_add(1, Ordering::Relaxed);
            let wait = Duration::from_secs(190);
            let ok = match args.mode {
                LoadMode::Http | LoadMode::HttpGzip => matches!(
                    tokio::time::timeout(
                        wait,
                        super::wire::read_http_status(&mut s, &mut text_replies)
                    )
                    .await,
                    Ok(Ok(200..=299))
                ),
                LoadMode::Json => matches!(
                    tokio::time::timeout(wait, super::wire::read_json_ack(&mut s, &mut text_replies)).await,
                    Ok(Ok(ref id)) if *id == c
                ),
                _ => {
                    let got =
                        tokio::time::timeout(wait, client::read_ack(&mut s, &mut replies)).await;
                    matches!(got, Ok(Ok(ref id)) if id == c.as_bytes())
                }
            };
            totals.pending.fetch_sub(1, Ordering::Relaxed);
            if !ok {
                totals.failed_requests.fetch_add(1, Ordering::Relaxed);
                return;
            }
            totals
                .acked_events
                .fetch_add(per_request as u64, Ordering::Relaxed);
            let us = sent_at.elapsed().as_micros() as u64;
            if let Ok(mut h) = latencies.lock() {
                let _ = h.record(us.max(1));
            }
        }
        n += 1;
    }
    let _ = s.shutdown().await;
}

/// The tags, used in turn across all connections (so N requests cover
/// min(N, tags) tags however many connections send them).
struct TagCycle {
    tags: Vec<String>,
    next: AtomicU64,
}

impl TagCycle {
    fn next(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        &self.tags[i % self.tags.len()]
    }
}
