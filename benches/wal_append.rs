//! WAL append with group commit and fsync: many concurrent appenders of
//! 1000-event batches share syncs. Reports events/s made durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::watch;
use weir::config::Durability;
use weir::event::{BatchBuilder, EventBatch};
use weir::metrics::Metrics;
use weir::wal::{self, WalLinks, WalSettings};

#[path = "support.rs"]
mod support;

fn batch() -> EventBatch {
    let mut b = BatchBuilder::new(b"app.access", 256 * 1024);
    for i in 0..support::EVENTS_PER_REQUEST {
        b.push(1_764_090_000_000_000_000 + i as i64, &support::record(i));
    }
    b.finish()
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch = batch();
    let mut g = c.benchmark_group("wal_append");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (durability, appenders) in [
        (Durability::Fsync, 1usize),
        (Durability::Fsync, 16),
        (Durability::None, 16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_release_tx, release_rx) = watch::channel(0);
        let (oldest, _) = watch::channel(0);
        let (state, _) = watch::channel(wal::WalState::Healthy);
        let (_stop_tx, stop) = watch::channel(false);
        let (wal, _thread) = wal::start(
            WalSettings {
                dir: dir.path().to_path_buf(),
                durability,
                segment_bytes: 64 << 20,
                max_group_bytes: 8 << 20,
                dedupe_window: 0,
                max_backlog_bytes: u64::MAX,
                disk_reserve: 0,
            },
            WalLinks {
                durable: wal::tail::Durable::new(),
                roller_position: Default::default(),
                release: release_rx,
                oldest,
                state,
                stop,
                backpressure: weir::backpressure::Backpressure::new(Metrics::new()),
                metrics: Metrics::new(),
            },
        )
        .unwrap();
        let wal = Arc::new(wal);
        g.throughput(Throughput::Elements(
            (support::EVENTS_PER_REQUEST * appenders) as u64,
        ));
        g.bench_function(format!("{durability:?}_{appenders}_appenders"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|_| {
                            let (wal, batch) = (wal.clone(), batch.clone());
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    wal.append(batch.clone()).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
