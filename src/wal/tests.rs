//! WAL behaviour across restarts: replay, torn tails, damage, rotation,
//! release, and sequence numbers that never repeat.

use std::path::Path;

use tokio::sync::watch;

use super::*;
use crate::event::BatchBuilder;

fn batch(i: u64) -> EventBatch {
    let mut b = BatchBuilder::new(b"t", 64);
    b.push(i as i64, &[0x81, 0xa1, b'i', (i % 100) as u8]);
    b.finish()
}

struct Run {
    /// Sequence numbers of replayed records, then of appended ones.
    replayed: Vec<u64>,
    appended: Vec<u64>,
}

/// A WAL writer on `dir`, the records a roller would read after its
/// recovery (what is on disk), and the release mark's sender.
fn open(
    dir: &Path,
    segment_bytes: u64,
    dedupe_window: usize,
) -> (
    WalHandle,
    std::thread::JoinHandle<()>,
    Vec<u64>,
    watch::Sender<u64>,
) {
    let durable = tail::Durable::new();
    let (release_tx, release_rx) = watch::channel(0);
    let (oldest, _) = watch::channel(0);
    let (state, _) = watch::channel(WalState::Healthy);
    let (_stop_tx, stop) = watch::channel(false);
    let (wal, thread) = start(
        WalSettings {
            dir: dir.to_path_buf(),
            durability: crate::wal::config::Durability::Fsync,
            segment_bytes,
            max_group_bytes: 1 << 20,
            dedupe_window,
            max_backlog_bytes: u64::MAX,
            disk_reserve: 0,
        },
        WalLinks {
            durable: durable.clone(),
            roller_position: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
            release: release_rx,
            oldest,
            state,
            stop,
            backpressure: crate::backpressure::Backpressure::new(crate::metrics::Metrics::new()),
            metrics: crate::metrics::Metrics::new(),
        },
    )
    .unwrap();
    let mut mark = durable.get();
    while !mark.recovered {
        mark = durable.wait_change(mark, std::time::Duration::from_secs(5));
    }
    let mut t = tail::Tail::new(dir, 0);
    let mut on_disk = Vec::new();
    while let Some(r) = t.next(mark.seq).unwrap() {
        on_disk.push(r.seq);
    }
    (wal, thread, on_disk, release_tx)
}

/// Opens the WAL in `dir`, appends `n` batches, releases below `release`,
/// then shuts it down and reports what flowed downstream.
fn run(dir: &Path, n: u64, release: u64, segment_bytes: u64) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (wal, thread, replayed, release_tx) = open(dir, segment_bytes, 0);
    let appended = rt.block_on(async {
        let mut seqs = Vec::new();
        for i in 0..n {
            seqs.push(wal.append(batch(i)).await.unwrap());
        }
        release_tx.send(release).unwrap();
        wal.tick().await.unwrap();
        seqs
    });
    drop(wal);
    thread.join().unwrap();
    Run { replayed, appended }
}

fn segments(dir: &Path) -> Vec<segment::SegmentFile> {
    segment::list(dir).unwrap()
}

#[test]
fn replays_everything_and_continues_the_sequence() {
    let d = tempfile::tempdir().unwrap();
    let first = run(d.path(), 10, 0, 1 << 20);
    assert_eq!(first.appended, (0..10).collect::<Vec<_>>());
    let second = run(d.path(), 3, 0, 1 << 20);
    assert_eq!(second.replayed, (0..10).collect::<Vec<_>>());
    assert_eq!(second.appended, vec![10, 11, 12]);
}

#[test]
fn a_torn_tail_is_truncated_and_the_rest_replayed() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), 5, 0, 1 << 20);
    let seg = &segments(d.path())[0];
    let len = std::fs::metadata(&seg.path).unwrap().len();
    // Cut the last record in half, as a crash mid-write would.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .unwrap();
    f.set_len(len - 10).unwrap();
    let again = run(d.path(), 1, 0, 1 << 20);
    assert_eq!(again.replayed, vec![0, 1, 2, 3]);
    // Seq 4 was torn, so it was never synced, acked or passed on: its
    // number is free again.
    assert_eq!(again.appended, vec![4]);
    let third = run(d.path(), 0, 0, 1 << 20);
    assert_eq!(third.replayed, vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_flipped_byte_in_an_old_segment_skips_only_that_segments_rest() {
    let d = tempfile::tempdir().unwrap();
    // Tiny segments: one record each.
    run(d.path(), 6, 0, 16);
    let segs = segments(d.path());
    assert!(segs.len() >= 6, "{segs:?}");
    let victim = &segs[1];
    let mut bytes = std::fs::read(&victim.path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x55;
    std::fs::write(&victim.path, bytes).unwrap();
    let again = run(d.path(), 0, 0, 16);
    assert_eq!(again.replayed, vec![0, 2, 3, 4, 5]);
}

#[test]
fn released_segments_are_deleted_but_never_the_active_one() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), 8, 0, 16);
    let before = segments(d.path()).len();
    // Everything below seq 5 is in finished files.
    run(d.path(), 0, 5, 16);
    let after = segments(d.path());
    assert!(after.len() < before);
    assert!(after.iter().all(|s| s.first_seq >= 5), "{after:?}");
    let r = run(d.path(), 1, u64::MAX, 16);
    assert_eq!(r.replayed, vec![5, 6, 7]);
    // Releasing everything keeps the newest segment, so numbering goes on.
    assert_eq!(segments(d.path()).len(), 1);
    let r = run(d.path(), 1, 0, 16);
    assert_eq!(r.appended, vec![9]);
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let links = || {
        let (_r, release) = watch::channel(0);
        let (oldest, _) = watch::channel(0);
        let (state, _) = watch::channel(WalState::Healthy);
        let (_stop_tx, stop) = watch::channel(false);
        (release, oldest, state, stop)
    };
    let settings = WalSettings {
        dir: d.path().to_path_buf(),
        durability: crate::wal::config::Durability::None,
        segment_bytes: 1 << 20,
        max_group_bytes: 1 << 20,
        dedupe_window: 0,
        max_backlog_bytes: u64::MAX,
        disk_reserve: 0,
    };
    let (release, oldest, state, stop) = links();
    let first = start(
        settings.clone(),
        WalLinks {
            durable: tail::Durable::new(),
            roller_position: Default::default(),
            release,
            oldest,
            state,
            stop,
            backpressure: crate::backpressure::Backpressure::new(crate::metrics::Metrics::new()),
            metrics: crate::metrics::Metrics::new(),
        },
    )
    .unwrap();
    let (release, oldest, state, stop) = links();
    let second = start(
        settings,
        WalLinks {
            durable: tail::Durable::new(),
            roller_position: Default::default(),
            release,
            oldest,
            state,
            stop,
            backpressure: crate::backpressure::Backpressure::new(crate::metrics::Metrics::new()),
            metrics: crate::metrics::Metrics::new(),
        },
    );
    let err = second.err().expect("second writer refused");
    assert!(err.to_string().contains("locked"), "{err}");
    drop(first);
}

#[test]
fn a_resent_chunk_is_acked_without_a_second_copy_even_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = || Some(crate::input::dedupe_key("10.0.0.1", b"tag", &[b'c'; 4096]));
    let (wal, thread, _rx, _release) = open(d.path(), 1 << 20, 10);
    let (a, b, c) = rt.block_on(async {
        (
            wal.append_keyed(batch(1), key()).await.unwrap(),
            wal.append_keyed(batch(1), key()).await.unwrap(),
            wal.append_keyed(batch(2), None).await.unwrap(),
        )
    });
    assert_eq!(
        (a, b, c),
        (0, 0, 1),
        "the resend gets the original's sequence"
    );
    drop(wal);
    thread.join().unwrap();
    let (wal, thread, on_disk, _release) = open(d.path(), 1 << 20, 10);
    assert_eq!(on_disk, vec![0, 1]);
    let again = rt.block_on(wal.append_keyed(batch(1), key())).unwrap();
    assert_eq!(again, 0, "remembered across a restart through the WAL");
    drop(wal);
    thread.join().unwrap();
    let (wal, thread, on_disk, _release) = open(d.path(), 1 << 20, 10);
    assert_eq!(on_disk, vec![0, 1], "the resend added no record");
    drop(wal);
    thread.join().unwrap();
}

/// A chunk whose record was deleted with its segment (its events are in a
/// finished file) is still recognised when resent after a restart: the
/// window is saved before segments go.
#[test]
fn a_resend_is_recognised_after_its_segment_was_released() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = || Some(crate::input::dedupe_key("10.0.0.1", b"tag", b"chunk-1"));
    // 4 KiB segments: every few records rotate.
    let (wal, thread, _rx, release) = open(d.path(), 4096, 100);
    let first = rt.block_on(wal.append_keyed(batch(1), key())).unwrap();
    for i in 2..200 {
        rt.block_on(wal.append_keyed(batch(i), None)).unwrap();
    }
    // The roller is done with everything: the segments can go.
    release.send(200).unwrap();
    rt.block_on(wal.tick()).unwrap();
    drop(wal);
    thread.join().unwrap();
    let segments = segment::list(d.path()).unwrap();
    assert!(
        segments.first().is_some_and(|s| s.first_seq > first),
        "the first record's segment was deleted: {segments:?}"
    );
    let (wal, thread, _rx, _release) = open(d.path(), 4096, 100);
    let again = rt.block_on(wal.append_keyed(batch(1), key())).unwrap();
    assert_eq!(again, first, "remembered through the snapshot");
    drop(wal);
    thread.join().unwrap();
}

/// A write that fails (a full disk) is retried, and meanwhile the roller's
/// clock keeps moving: the durable mark's stamp advances while the group
/// waits, and the group is written with the stamp of the attempt that
/// succeeded, never earlier than a time already published.
#[test]
fn a_failing_write_keeps_the_clock_moving_and_is_stamped_when_written() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let durable = tail::Durable::new();
    let (_release_tx, release) = watch::channel(0);
    let (oldest, _) = watch::channel(0);
    let (state, mut state_rx) = watch::channel(WalState::Healthy);
    let (_stop_tx, stop) = watch::channel(false);
    let (wal, thread) = start(
        WalSettings {
            dir: d.path().to_path_buf(),
            durability: crate::wal::config::Durability::Fsync,
            segment_bytes: 1 << 20,
            max_group_bytes: 1 << 20,
            dedupe_window: 0,
            max_backlog_bytes: u64::MAX,
            disk_reserve: 0,
        },
        WalLinks {
            durable: durable.clone(),
            roller_position: Default::default(),
            release,
            oldest,
            state,
            stop,
            backpressure: crate::backpressure::Backpressure::new(crate::metrics::Metrics::new()),
            metrics: crate::metrics::Metrics::new(),
        },
    )
    .unwrap();
    assert_eq!(rt.block_on(wal.append(batch(1))).unwrap(), 0);
    let before = durable.get();
    assert_eq!(before.seq, 1);
    // The next four writes fail (about 1.5 s of retries).
    super::writer::fail_writes(d.path(), 4);
    let pending = rt.spawn({
        let wal = wal.clone();
        async move { wal.append(batch(2)).await }
    });
    // While the group waits, the mark's stamp moves on without its seq.
    let mut seen = before;
    let started = std::time::Instant::now();
    while seen.stamp_ms < before.stamp_ms + 500 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the clock stood still: {seen:?}"
        );
        seen = durable.wait_change(seen, std::time::Duration::from_millis(100));
        assert_eq!(seen.seq, 1, "nothing past the failing group is durable");
    }
    assert!(matches!(
        *state_rx.borrow_and_update(),
        WalState::Stalled(_)
    ));
    let published = durable.get().stamp_ms;
    assert_eq!(rt.block_on(pending).unwrap().unwrap(), 1);
    drop(wal);
    thread.join().unwrap();
    let mut t = tail::Tail::new(d.path(), 0);
    let first = t.next(u64::MAX).unwrap().unwrap();
    let second = t.next(u64::MAX).unwrap().unwrap();
    assert_eq!((first.seq, second.seq), (0, 1));
    assert!(
        second.arrival_ms >= published,
        "stamped {} before the published clock {published}",
        second.arrival_ms
    );
}

/// A segment whose creation a full disk cut short (its magic not all
/// written) is neither a crash at start nor a reason to stop writing: at
/// recovery it is dropped, and a leftover at the next segment's name is
/// replaced when the writer starts that segment.
#[test]
fn a_segment_cut_short_by_a_full_disk_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), 3, 0, 1 << 20);
    std::fs::write(segment::segment_path(d.path(), 3), b"WEI").unwrap();
    let again = run(d.path(), 1, 0, 1 << 20);
    assert_eq!(again.replayed, vec![0, 1, 2]);
    assert_eq!(again.appended, vec![3]);
    // Tiny segments: the next write starts segment 4, whose name a failed
    // attempt already took.
    std::fs::write(segment::segment_path(d.path(), 4), b"").unwrap();
    let third = run(d.path(), 1, 0, 16);
    assert_eq!(third.replayed, vec![0, 1, 2, 3]);
    assert_eq!(third.appended, vec![4]);
    let fourth = run(d.path(), 0, 0, 16);
    assert_eq!(fourth.replayed, vec![0, 1, 2, 3, 4]);
}

/// Under `wal.disk_reserve` appends wait, and the roller's clock keeps
/// moving meanwhile (periods end, files finish and free the space): the
/// durable mark's stamp advances while no record is added.
#[test]
fn appends_wait_under_the_disk_reserve_while_the_clock_moves() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let durable = tail::Durable::new();
    let (_release_tx, release) = watch::channel(0);
    let (oldest, _) = watch::channel(0);
    let (state, state_rx) = watch::channel(WalState::Healthy);
    let (stop_tx, stop) = watch::channel(false);
    let metrics = crate::metrics::Metrics::new();
    let (wal, thread) = start(
        WalSettings {
            dir: d.path().to_path_buf(),
            durability: crate::wal::config::Durability::Fsync,
            segment_bytes: 1 << 20,
            max_group_bytes: 1 << 20,
            dedupe_window: 0,
            max_backlog_bytes: u64::MAX,
            // More than any disk has.
            disk_reserve: u64::MAX / 4,
        },
        WalLinks {
            durable: durable.clone(),
            roller_position: Default::default(),
            release,
            oldest,
            state,
            stop,
            backpressure: crate::backpressure::Backpressure::new(metrics.clone()),
            metrics: metrics.clone(),
        },
    )
    .unwrap();
    let pending = rt.spawn({
        let wal = wal.clone();
        async move { wal.append(batch(1)).await }
    });
    let mut seen = durable.get();
    while !seen.recovered {
        seen = durable.wait_change(seen, std::time::Duration::from_millis(100));
    }
    let first = seen;
    let started = std::time::Instant::now();
    while seen.stamp_ms < first.stamp_ms + 600 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the clock stood still: {seen:?}"
        );
        seen = durable.wait_change(seen, std::time::Duration::from_millis(100));
        assert_eq!(seen.seq, 0, "nothing was written under the reserve");
    }
    assert!(matches!(&*state_rx.borrow(), WalState::Stalled(w) if w.contains("wal.disk_reserve")));
    assert_eq!(metrics.value("weir_wal_disk_reserve_waits_total", &[]), 1.0);
    stop_tx.send(true).unwrap();
    let _ = rt.block_on(pending).unwrap();
    drop(wal);
    thread.join().unwrap();
}
