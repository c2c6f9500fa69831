//! One connection with many unacked requests: weir decodes and submits the
//! next request while the WAL makes the previous one durable, so one group
//! commit covers several requests of one connection, and the acks come back
//! in order, each for its own chunk (gzip requests among them, and one
//! whose events were all invalid).

use std::io::Write;
use std::time::Duration;

use crate::common::*;

/// `[tag, [["not a time", {"a": 1}]], {"chunk": chunk}]`: acked, nothing kept.
fn all_invalid(tag: &str, chunk: &str) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    mp_str(&mut b, tag);
    rmp::encode::write_array_len(&mut b, 1).unwrap();
    rmp::encode::write_array_len(&mut b, 2).unwrap();
    mp_str(&mut b, "not a time");
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    mp_str(&mut b, "a");
    rmp::encode::write_uint(&mut b, 1).unwrap();
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    mp_str(&mut b, "chunk");
    mp_str(&mut b, chunk);
    b
}

/// CompressedPackedForward: `[tag, bin(gzip(entries)), {chunk, compressed: "gzip"}]`.
fn gzip_request(tag: &str, events: &[(i64, String)], chunk: &str) -> Vec<u8> {
    let mut entries = Vec::new();
    for (t, id) in events {
        rmp::encode::write_array_len(&mut entries, 2).unwrap();
        rmp::encode::write_uint(&mut entries, *t as u64).unwrap();
        rmp::encode::write_map_len(&mut entries, 2).unwrap();
        mp_str(&mut entries, "id");
        mp_str(&mut entries, id);
        mp_str(&mut entries, "pad");
        mp_str(&mut entries, &"y".repeat(100));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&entries).unwrap();
    let blob = gz.finish().unwrap();
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    mp_str(&mut b, tag);
    rmp::encode::write_bin(&mut b, &blob).unwrap();
    rmp::encode::write_map_len(&mut b, 2).unwrap();
    mp_str(&mut b, "chunk");
    mp_str(&mut b, chunk);
    mp_str(&mut b, "compressed");
    mp_str(&mut b, "gzip");
    b
}

#[test]
fn unacked_requests_of_one_connection_share_group_commits_and_ack_in_order() {
    let weir = Weir::start("");
    let mut s = connect(weir.port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let t = now_secs();
    let rounds = 20;
    let per_round = 12;
    let mut ids = 0u64;
    for round in 0..rounds {
        // A window of requests written before any ack is read.
        let mut chunks = Vec::new();
        let mut wire = Vec::new();
        for k in 0..per_round {
            let chunk = format!("r{round}-{k}");
            if k == 5 {
                wire.extend(all_invalid("pipe.x", &chunk));
            } else {
                let events: Vec<(i64, String)> = (0..200)
                    .map(|_| {
                        ids += 1;
                        (t, format!("e{ids}"))
                    })
                    .collect();
                if k % 3 == 1 {
                    wire.extend(gzip_request("pipe.x", &events, &chunk));
                } else {
                    wire.extend(forward_request("pipe.x", &events, Some(&chunk), 100));
                }
            }
            chunks.push(chunk);
        }
        s.write_all(&wire).unwrap();
        for chunk in &chunks {
            read_ack(&mut s, chunk).unwrap_or_else(|e| panic!("ack for {chunk}: {e}"));
        }
    }
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_forward_events_total", &[]),
        ids as f64,
        "every event accepted once"
    );
    let groups = metric(&m, "weir_wal_group_requests_count", &[]);
    let records = metric(&m, "weir_wal_group_requests_sum", &[]);
    assert_eq!(records, (rounds * (per_round - 1)) as f64);
    assert!(
        groups < records * 0.8,
        "one connection's requests shared group commits: {records} records in {groups} groups"
    );
    println!("pipelining: {records} requests in {groups} group commits");
    let ok = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_rows_total", &[]) >= ids as f64
            && metric(&m, "weir_roll_open_files", &[]) == 0.0
            && metric(&m, "weir_outbox_files", &[]) == 0.0
    });
    assert!(ok, "{}", weir.log());
    assert_eq!(
        count_rows(&weir.out_dir()),
        (ids, ids),
        "every event stored once"
    );
}

/// Good requests and a bad one in a single write: the good ones were made
/// durable, so they are acked before the connection is closed for the bad
/// one (as they were when requests were handled one at a time).
#[test]
fn good_requests_before_a_bad_one_are_acked_before_the_close() {
    let weir = Weir::start("");
    let t = now_secs();
    for (name, bad) in [
        ("malformed", vec![0xc1u8]),
        ("corrupt gzip", {
            let mut b = Vec::new();
            rmp::encode::write_array_len(&mut b, 3).unwrap();
            mp_str(&mut b, "pipe.bad");
            rmp::encode::write_bin(&mut b, b"\x1f\x8bnot really gzip").unwrap();
            rmp::encode::write_map_len(&mut b, 2).unwrap();
            mp_str(&mut b, "chunk");
            mp_str(&mut b, "bad");
            mp_str(&mut b, "compressed");
            mp_str(&mut b, "gzip");
            b
        }),
    ] {
        let mut s = connect(weir.port).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut wire = Vec::new();
        let chunks: Vec<String> = (0..10).map(|k| format!("{name}-{k}")).collect();
        for c in &chunks {
            wire.extend(forward_request("pipe.good", &[(t, c.clone())], Some(c), 10));
        }
        wire.extend(&bad);
        s.write_all(&wire).unwrap();
        for c in &chunks {
            read_ack(&mut s, c).unwrap_or_else(|e| panic!("{name}: ack for {c}: {e}"));
        }
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut rest);
        assert!(
            rest.is_empty(),
            "{name}: nothing after the good acks: {rest:02x?}"
        );
    }
}
