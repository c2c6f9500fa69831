//! Retransmit de-duplication: weir is killed after a chunk is durable but
//! before its ack goes out (failpoint `forward.before_ack`, as abrupt as
//! kill -9); the client resends the same chunk id after the restart and gets
//! an ack, and the events are stored once.

use std::io::Read;
use std::time::Duration;

use crate::common::*;

#[test]
fn a_resend_after_a_crash_between_fsync_and_ack_is_stored_once() {
    let mut weir = Weir::create_full("", "", "");
    weir.env = vec![("WEIR_FAILPOINTS".into(), "forward.before_ack".into())];
    weir.spawn();
    let t = now_secs();
    let req = forward_request(
        "dd.x",
        &[(t, "d1".into()), (t, "d2".into())],
        Some("dup-1"),
        0,
    );
    let mut s = connect(weir.port).unwrap();
    std::io::Write::write_all(&mut s, &req).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "no ack before the crash");
    assert!(
        weir.wait_exit(Duration::from_secs(20)),
        "failpoint not reached"
    );

    weir.env.clear();
    weir.spawn();
    let mut s = connect(weir.port).unwrap();
    send_acked(&mut s, &req, "dup-1").expect("the resend is acked");
    // A new chunk id is a new chunk, even with the same events.
    let again = forward_request("dd.x", &[(t, "d3".into())], Some("dup-2"), 0);
    send_acked(&mut s, &again, "dup-2").unwrap();
    let m = scrape(weir.metrics_port);
    assert_eq!(metric(&m, "weir_forward_duplicate_chunks_total", &[]), 1.0);

    let ok = wait_until(Duration::from_secs(150), || !weir.output_files().is_empty());
    assert!(ok, "{}", weir.log());
    let rows = read_rows(&weir.out_dir());
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r.record["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["d1", "d2", "d3"], "each event once");
}

/// The chunk's record is gone from the WAL before the client resends it:
/// weir dies between fsync and ack, then (restarted) finishes the chunk's
/// file and deletes its segment, then dies again; only then does the
/// client's resend arrive. The resend is still recognised (the dedupe
/// window outlives released segments), also for a 4 KiB chunk id.
#[test]
fn a_resend_after_its_segment_was_released_and_another_crash_is_stored_once() {
    let mut weir = Weir::create_full("", "", "[wal]\nsegment_bytes = \"8KiB\"\n");
    weir.env = vec![("WEIR_FAILPOINTS".into(), "forward.before_ack".into())];
    weir.spawn();
    let t = now_secs();
    let long_chunk = "c".repeat(4096);
    let req = forward_request(
        "rel.x",
        &[(t, "x1".into()), (t, "x2".into())],
        Some(&long_chunk),
        0,
    );
    let mut s = connect(weir.port).unwrap();
    std::io::Write::write_all(&mut s, &req).unwrap();
    assert!(
        weir.wait_exit(Duration::from_secs(20)),
        "failpoint not reached"
    );

    // Second life: traffic fills and rotates segments until the chunk's
    // minute is finished and its segment released.
    weir.env.clear();
    weir.spawn();
    let wal = weir.data_dir().join("wal");
    let first_segment = || {
        std::fs::read_dir(&wal)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".wal")?
                    .parse::<u64>()
                    .ok()
            })
            .min()
    };
    let mut s = connect(weir.port).unwrap();
    let mut n = 0;
    let released = wait_until(Duration::from_secs(150), || {
        let chunk = format!("fill-{n}");
        let ev: Vec<(i64, String)> = (0..5).map(|i| (now_secs(), format!("f{n}-{i}"))).collect();
        send_acked(
            &mut s,
            &forward_request("rel.fill", &ev, Some(&chunk), 300),
            &chunk,
        )
        .unwrap();
        n += 1;
        first_segment().is_some_and(|f| f > 0)
    });
    assert!(
        released,
        "the chunk's segment was never released\n{}",
        weir.log()
    );

    // Third life: the client's resend arrives only now.
    weir.kill9();
    weir.spawn();
    let mut s = connect(weir.port).unwrap();
    send_acked(&mut s, &req, &long_chunk).expect("the resend is acked");
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_forward_duplicate_chunks_total", &[]),
        1.0,
        "recognised as a resend"
    );
    let ok = wait_until(Duration::from_secs(150), || {
        metric(&scrape(weir.metrics_port), "weir_roll_open_files", &[]) == 0.0
            && read_rows(&weir.out_dir())
                .iter()
                .any(|r| r.tag == "rel.fill")
    });
    assert!(ok, "{}", weir.log());
    let x: Vec<String> = read_rows(&weir.out_dir())
        .iter()
        .filter(|r| r.tag == "rel.x")
        .map(|r| r.record["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(x.len(), 2, "each of the chunk's events once: {x:?}");
}
