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
