//! The roller against a simulated WAL: every event lands in exactly one
//! finished file whatever the times, tags, bounds and restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::config::Config;
use crate::event::BatchBuilder;
use crate::metrics::Metrics;
use crate::outbox::{Manifest, OutboxDir};
use crate::wal::WalRecord;

const MIN: i64 = 60_000;

/// A record of `events` (time in ms, id) under `tag`.
fn record(seq: u64, arrival_ms: i64, tag: &str, events: &[(i64, u64)]) -> WalRecord {
    let mut b = BatchBuilder::new(tag.as_bytes(), 64);
    for &(t, id) in events {
        let mut rec = Vec::new();
        rmp::encode::write_map_len(&mut rec, 1).unwrap();
        rmp::encode::write_str(&mut rec, "id").unwrap();
        rmp::encode::write_uint(&mut rec, id).unwrap();
        b.push(t * 1_000_000, &rec);
    }
    WalRecord {
        seq,
        arrival_ms,
        dedupe_key: bytes::Bytes::new(),
        batch: b.finish(),
    }
}

/// One roller run over `records`, fed in order, with a tick after each
/// record at its arrival time. Returns the release mark it ended with.
fn run(config: &Arc<Config>, records: &[WalRecord], drain: bool, metrics: &Metrics) -> u64 {
    let data = &config.data_dir;
    // The WAL on disk, for rebuilds.
    let wal_dir = data.join("wal");
    let _ = std::fs::remove_dir_all(&wal_dir);
    std::fs::create_dir_all(&wal_dir).unwrap();
    let mut seg = crate::wal::MAGIC.to_vec();
    for r in records {
        crate::wal::encode(&mut seg, r.seq, r.arrival_ms, b"", &r.batch);
    }
    let first = records.first().map_or(0, |r| r.seq);
    std::fs::write(crate::wal::segment_path(&wal_dir, first), seg).unwrap();

    let outbox = OutboxDir::open(data.join("outbox")).unwrap();
    let initial = outbox.load(&Metrics::new()).unwrap();
    // The writer has stopped: everything on disk is durable.
    let durable = crate::wal::Durable::new();
    let end = records.last().map_or(0, |r| r.seq + 1);
    durable.publish(end, records.last().map_or(0, |r| r.arrival_ms));
    durable.close();
    let (release_tx, release_rx) = watch::channel(0);
    let (_oldest_tx, oldest_rx) = watch::channel(0);
    let (finished_tx, mut finished_rx) = mpsc::channel(1 << 20);
    let (_sd_tx, sd_rx) = watch::channel(false);
    let handle = start(
        config.clone(),
        RollerLinks {
            durable,
            position: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            release: std::sync::Arc::new(release_tx),
            wal_oldest: oldest_rx,
            finished: finished_tx,
            outbox,
            initial,
            metrics: metrics.clone(),
            backlog: crate::outbox::Backlog::new(u64::MAX, metrics.clone()),
            shutdown: sd_rx,
            drain: Arc::new(AtomicBool::new(drain)),
            status: crate::status::StageStatus::new(),
        },
    )
    .unwrap();
    handle.join().unwrap().unwrap();
    while finished_rx.try_recv().is_ok() {}
    let mark = *release_rx.borrow();
    mark
}

/// Every id in the outbox's Parquet files, with how often it occurs, and
/// the manifests.
fn stored(data: &Path) -> (BTreeMap<u64, usize>, Vec<Manifest>) {
    let outbox = OutboxDir::open(data.join("outbox")).unwrap();
    let manifests = outbox.load(&Metrics::new()).unwrap();
    let mut ids = BTreeMap::new();
    for m in manifests
        .iter()
        .filter(|m| m.kind == crate::outbox::FileKind::Parquet)
    {
        let file = std::fs::File::open(outbox.data_path(m)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut rows = 0;
        for batch in reader {
            let batch = batch.unwrap();
            let rec = batch
                .column_by_name("record")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..rec.len() {
                let v: serde_json::Value = serde_json::from_str(rec.value(i)).unwrap();
                *ids.entry(v["id"].as_u64().unwrap()).or_insert(0) += 1;
                rows += 1;
            }
        }
        assert_eq!(rows, m.rows, "manifest rows of {}", m.id);
    }
    (ids, manifests)
}

fn config(dir: &Path, extra: &str) -> Arc<Config> {
    let text = format!(
        "node_id = \"n1\"\ndata_dir = \"{}\"\n[roll]\nperiod = \"1m\"\ngrace = \"10s\"\nmax_future = \"1m\"\nmax_past = \"10m\"\n{extra}",
        dir.display()
    );
    Arc::new(Config::from_str(&text, "test").unwrap())
}

#[test]
fn events_go_where_the_window_says() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let t0 = 1_764_090_000_000; // a minute boundary
    let arrival = t0 + 30_000;
    let r = record(
        0,
        arrival,
        "app",
        &[
            (arrival, 1),                        // its period
            (arrival - 5 * MIN, 2),              // late
            (arrival - 20 * MIN, 3),             // older than max_past: outside
            (arrival + 3650 * 24 * 60 * MIN, 4), // years ahead: outside
        ],
    );
    let metrics = Metrics::new();
    run(&cfg, &[r], true, &metrics);
    let (ids, manifests) = stored(dir.path());
    assert_eq!(ids.values().copied().collect::<Vec<_>>(), vec![1, 1, 1, 1]);
    let mut keys: Vec<String> = manifests
        .iter()
        .flat_map(|m| m.keys.values().cloned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "app/dt=2025-11-25/hour=16/minute=55/n1.late-0.parquet",
            "app/dt=2025-11-25/hour=17/minute=00/n1.outside-0.parquet",
            // The drain finished the open period early: a part, never the
            // period's one file, which a later run may still write.
            "app/dt=2025-11-25/hour=17/minute=00/n1.part-0.parquet",
        ]
    );
    assert_eq!(
        metrics.value("weir_roll_outside_events_total", &[("direction", "past")])
            + metrics.value("weir_roll_outside_events_total", &[("direction", "future")]),
        2.0
    );
    assert_eq!(metrics.value("weir_roll_late_events_total", &[]), 1.0);
}

/// Random tags, times and crash points against small bounds: after the
/// last run every event is in exactly one finished file.
#[test]
fn every_event_once_through_restarts_and_bounds() {
    for seed in 0..20u64 {
        // On tmpfs when there is one: this test finishes thousands of
        // files, and each one is synced.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let cfg = config(
            dir.path(),
            "max_open_files = 2\nmax_buffer_bytes = \"1MiB\"\n[[route]]\nname = \"all\"\nmatch = \"**\"\n",
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let t0 = 1_764_090_000_000;
        let mut records = Vec::new();
        let mut id = 0;
        for seq in 0..100u64 {
            let arrival = t0 + seq as i64 * 1_500;
            let tag = format!("t{}", rng.random_range(0..3));
            let n = rng.random_range(1..20);
            let events: Vec<(i64, u64)> = (0..n)
                .map(|_| {
                    id += 1;
                    let off = match rng.random_range(0..10) {
                        0 => -rng.random_range(0..30) * MIN,
                        1 => rng.random_range(0..3000) * MIN,
                        _ => -rng.random_range(0..60_000),
                    };
                    (arrival + off, id)
                })
                .collect();
            records.push(record(seq, arrival, &tag, &events));
        }
        // Crash points: run a prefix, stop without draining, restart from
        // the release mark (what the WAL would still hold) and go on.
        let mut cuts = [
            rng.random_range(5..50usize),
            rng.random_range(5..50usize),
            rng.random_range(50..99usize),
            100,
        ];
        cuts.sort();
        let metrics = Metrics::new();
        let mut mark = 0u64;
        let mut done = 0usize;
        for (i, &cut) in cuts.iter().enumerate() {
            // Replay starts at a segment boundary at or below the mark.
            let start = mark.saturating_sub(rng.random_range(0..20));
            let from = records.iter().position(|r| r.seq >= start).unwrap_or(done);
            let slice = &records[from.min(done)..cut];
            mark = run(&cfg, slice, i + 1 == cuts.len(), &metrics);
            done = cut;
        }
        let (ids, _) = stored(dir.path());
        let dupes: Vec<_> = ids.iter().filter(|(_, &n)| n != 1).collect();
        assert!(dupes.is_empty(), "seed {seed}: duplicates {dupes:?}");
        assert_eq!(ids.len() as u64, id, "seed {seed}: events missing");
    }
}

#[test]
fn per_route_files_hold_many_tags_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[[route]]\nname = \"k8s\"\nmatch = \"kube.**\"\nfiles = \"per_route\"\n",
    );
    let arrival = 1_764_090_000_000 + 1_000;
    let records: Vec<WalRecord> = (0..500u64)
        .map(|i| record(i, arrival, &format!("kube.pod{i}"), &[(arrival, i)]))
        .collect();
    run(&cfg, &records, true, &Metrics::new());
    let (ids, manifests) = stored(dir.path());
    assert_eq!(ids.len(), 500);
    assert_eq!(manifests.len(), 1, "one file for 500 tags");
    assert_eq!(
        manifests[0].keys["local"],
        "k8s/dt=2025-11-25/hour=17/minute=00/n1.part-0.parquet"
    );
    // The tag column tells the tags apart.
    let outbox = OutboxDir::open(dir.path().join("outbox")).unwrap();
    let file = std::fs::File::open(outbox.data_path(&manifests[0])).unwrap();
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let mut tags = std::collections::BTreeSet::new();
    for b in &batches {
        // Stored dictionary-encoded, read back as plain strings: the embedded Arrow schema
        // says Utf8 so every reader sees one type for `tag`.
        let col = b.column_by_name("tag").unwrap();
        let values = col.as_any().downcast_ref::<StringArray>().unwrap();
        for v in values.iter() {
            tags.insert(v.unwrap().to_string());
        }
    }
    assert_eq!(tags.len(), 500);
}

#[test]
fn a_record_that_fails_is_quarantined_and_the_rest_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let arrival = 1_764_090_000_000 + 1_000;
    let records: Vec<WalRecord> = (0..6u64)
        .map(|i| {
            let tag = if i == 3 { "poison.boom" } else { "app" };
            record(i, arrival, tag, &[(arrival, i)])
        })
        .collect();
    // Make record 3 fail as data would: a panic in the middle of writing.
    std::env::set_var("WEIR_TEST_PANIC_TAG", "poison.boom");
    let metrics = Metrics::new();
    run(&cfg, &records, true, &metrics);
    std::env::remove_var("WEIR_TEST_PANIC_TAG");
    let (ids, _) = stored(dir.path());
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 4, 5]);
    assert_eq!(
        metrics.value("weir_roll_quarantined_records_total", &[]),
        1.0
    );
    let q = dir.path().join("deadletter/roller");
    assert!(q.join(format!("{:020}.wcap", 3)).exists());
    // A restart skips the quarantined record instead of failing again.
    let metrics = Metrics::new();
    run(&cfg, &records, true, &metrics);
    assert_eq!(
        metrics.value("weir_roll_quarantined_records_total", &[]),
        0.0
    );
}

/// One record dated over many past periods opens late files for a few of
/// them only; the rest share the outside file.
#[test]
fn one_record_opens_late_files_for_a_few_periods_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let arrival = 1_764_090_000_000 + 30_000;
    let events: Vec<(i64, u64)> = (0..9)
        .map(|i| (arrival - (i + 2) * MIN, i as u64))
        .collect();
    let metrics = Metrics::new();
    run(&cfg, &[record(0, arrival, "app", &events)], true, &metrics);
    let (ids, manifests) = stored(dir.path());
    assert_eq!(ids.len(), 9);
    let late = manifests
        .iter()
        .filter(|m| m.keys["local"].contains(".late-"))
        .count();
    let outside = manifests
        .iter()
        .filter(|m| m.keys["local"].contains(".outside-"))
        .count();
    assert_eq!((late, outside), (4, 1));
    assert_eq!(metrics.value("weir_roll_late_events_total", &[]), 4.0);
}
