//! End to end in one process: clients send PackedForward (1000 × ~200 B
//! events, ack requested) over TCP to a running weir with fsync durability;
//! an iteration ends when every request is acked and every row is encoded
//! into Parquet row groups. Prints peak RSS at the end.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::config::Config;
use weir::metrics::Metrics;

#[path = "support.rs"]
mod support;

const CONNECTIONS: usize = 8;
const REQUESTS_PER_CONNECTION: usize = 25;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn e2e(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = Config::from_str(
        &format!(
            "node_id='bench'\ndata_dir='{}'\n[forward]\nlisten='127.0.0.1:{port}'\n[wal]\ndurability='fsync'\n",
            dir.path().display()
        ),
        "bench",
    )
    .unwrap();
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(weir::serve::run_with_metrics(
        config,
        metrics.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    support::wait_for_port(port, "weir", || {
        server
            .is_finished()
            .then(|| "weir::serve returned (see its log above)".to_string())
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let entries = std::sync::Arc::new(support::entries(support::EVENTS_PER_REQUEST, now));
    // Every request has its own chunk id (16 hex digits, so acks are 22 bytes).
    let next_chunk = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_iter = (CONNECTIONS * REQUESTS_PER_CONNECTION * support::EVENTS_PER_REQUEST) as u64;
    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(per_iter));
    g.bench_function("packed_forward_fsync_to_parquet", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let target = metrics.roll.rows_written() + iters * per_iter;
                let tasks: Vec<_> = (0..CONNECTIONS)
                    .map(|_| {
                        let (entries, next_chunk) = (entries.clone(), next_chunk.clone());
                        tokio::spawn(async move {
                            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                            let mut ack = [0u8; 22];
                            for _ in 0..iters as usize * REQUESTS_PER_CONNECTION {
                                let n =
                                    next_chunk.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let chunk = format!("{n:016x}");
                                let req = support::packed_forward_from(
                                    "app.access",
                                    &entries,
                                    support::EVENTS_PER_REQUEST,
                                    Some(&chunk),
                                );
                                s.write_all(&req).await.unwrap();
                                let acked = tokio::time::timeout(
                                    Duration::from_secs(60),
                                    s.read_exact(&mut ack),
                                );
                                acked.await.expect("no ack within 60 s").unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                let give_up = Instant::now() + Duration::from_secs(120);
                while metrics.roll.rows_written() < target {
                    assert!(Instant::now() < give_up, "rows never reached the roller");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    eprintln!("end_to_end: peak RSS {} MiB", peak_rss_kib() / 1024);
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
}

criterion_group!(benches, e2e);
criterion_main!(benches);
