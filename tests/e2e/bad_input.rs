//! Invariant 5: bad input is contained. Each hostile input either closes its
//! own connection without an ack, or skips the bad events and acks the rest;
//! meanwhile a well-behaved client keeps getting acks, the process stays up,
//! and nothing acked is lost.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// What the server did with a connection after the input.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Closed without sending anything.
    ClosedNoAck,
    /// Sent exactly these bytes and kept the connection open.
    Replied(Vec<u8>),
}

fn ack_bytes(chunk: &str) -> Vec<u8> {
    let mut v = vec![0x81, 0xa3, b'a', b'c', b'k'];
    mp_str(&mut v, chunk);
    v
}

/// Sends `input`, then reads what comes back. If `expect_reply` bytes arrive
/// the connection must still be open (a nil keep-alive is accepted).
fn probe(port: u16, input: &[u8], expect_reply: usize) -> Outcome {
    let mut s = connect(port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may close while we are still writing (oversized input).
    let _ = s.write_all(input);
    let mut got = vec![0u8; expect_reply.max(1)];
    let mut n = 0;
    while n < got.len() {
        match s.read(&mut got[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    if n == 0 {
        return Outcome::ClosedNoAck;
    }
    got.truncate(n);
    // Still open: a no-op is accepted and nothing more arrives.
    s.write_all(&[0xc0]).expect("connection still open");
    Outcome::Replied(got)
}

fn request(elems: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, elems.len() as u32).unwrap();
    for e in elems {
        b.extend_from_slice(e);
    }
    b
}

fn s(v: &str) -> Vec<u8> {
    let mut b = Vec::new();
    mp_str(&mut b, v);
    b
}

fn chunk_opt(c: &str) -> Vec<u8> {
    let mut b = vec![0x81];
    b.extend(s("chunk"));
    b.extend(s(c));
    b
}

fn entry(time: &[u8], record: &[u8]) -> Vec<u8> {
    let mut b = vec![0x92];
    b.extend_from_slice(time);
    b.extend_from_slice(record);
    b
}

fn ok_record(id: &str) -> Vec<u8> {
    let mut b = vec![0x81];
    b.extend(s("id"));
    b.extend(s(id));
    b
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bin32(data: &[u8]) -> Vec<u8> {
    let mut b = vec![0xc6];
    b.extend((data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn hostile_input_stays_in_its_connection() {
    let mut weir = Weir::start_with(
        "max_buffer_bytes = \"1MiB\"\nmax_decompressed_bytes = \"1MiB\"",
        "",
    );
    let port = weir.port;

    // A well-behaved client keeps going the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let good_acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let good = {
        let (stop, acked) = (stop.clone(), good_acked.clone());
        std::thread::spawn(move || {
            let mut conn = connect(port).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let ids: Vec<(i64, String)> = (0..5)
                    .map(|e| (now_secs(), format!("good-{n}-{e}")))
                    .collect();
                let chunk = format!("good-{n}");
                send_acked(
                    &mut conn,
                    &forward_request("bad.good", &ids, Some(&chunk), 20),
                    &chunk,
                )
                .expect("the good client is never disturbed");
                acked
                    .lock()
                    .unwrap()
                    .extend(ids.into_iter().map(|(_, id)| id));
                n += 1;
            }
        })
    };

    let t = now_secs() as u32;
    let mut et = vec![0xd7, 0x00];
    et.extend(t.to_be_bytes());
    et.extend(0u32.to_be_bytes());
    let valid = forward_request("bad.x", &[(t as i64, "v".into())], Some("c1"), 0);

    // Closed, no ack.
    let closed_cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage bytes", vec![0xc1, 0xff, 0x00, 0x13, 0x37]),
        ("truncated request", valid[..valid.len() / 2].to_vec()),
        ("oversized frame", {
            let mut b = request(&[&s("bad.big")]);
            b[0] = 0x93;
            b.extend([0xc6, 0x00, 0x20, 0x00, 0x00]); // bin32 of 2 MiB
            b.extend(vec![0u8; 1_200_000]);
            b
        }),
        (
            "gzip bomb",
            request(&[
                &s("bad.bomb"),
                &bin32(&gzip(&vec![0x90u8; 8 << 20])),
                &[
                    &[0x82][..],
                    &s("compressed"),
                    &s("gzip"),
                    &s("chunk"),
                    &s("bomb"),
                ]
                .concat(),
            ]),
        ),
        (
            "unknown compression",
            request(&[
                &s("bad.lz4"),
                &bin32(b"\x92\x01\x80"),
                &[
                    &[0x82][..],
                    &s("compressed"),
                    &s("lz4"),
                    &s("chunk"),
                    &s("lz4"),
                ]
                .concat(),
            ]),
        ),
        (
            "corrupt gzip",
            request(&[
                &s("bad.gz"),
                &bin32(b"\x1f\x8b\x08\x00garbage-not-deflate"),
                &[
                    &[0x82][..],
                    &s("compressed"),
                    &s("gzip"),
                    &s("chunk"),
                    &s("gz"),
                ]
                .concat(),
            ]),
        ),
        ("request array too short", request(&[&s("bad.short")])),
        ("nesting too deep", vec![0x91; 10_000]),
    ];
    for (name, input) in &closed_cases {
        let mut conn = connect(port).unwrap();
        let _ = conn.write_all(input);
        if *name == "truncated request" {
            let _ = conn.shutdown(Shutdown::Write);
        }
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).unwrap_or(0);
        assert_eq!(
            n,
            0,
            "{name}: expected close without ack, got {:02x?}",
            &buf[..n]
        );
    }

    // Bad events skipped, the rest kept and acked; the connection stays open.
    let bad_tag = request(&[
        &[0x2a],
        &[&[0x91][..], &entry(&et, &ok_record("lost-tag"))].concat(),
        &chunk_opt("tag"),
    ]);
    let mixed = request(&[
        &s("bad.mixed"),
        &[
            &[0x96][..],
            &[0x05],                                    // entry not an array
            &entry(&s("noon"), &ok_record("bad-time")), // time is a string
            &entry(&et, &[0x92, 0x01, 0x02]),           // record is an array
            &entry(&[0xc0], &ok_record("nil-time")),    // time is nil
            &[0x93, 0x01, 0x80, 0x80],                  // entry of three
            &entry(&et, &ok_record("kept-1")),
        ]
        .concat(),
        &chunk_opt("mixed"),
    ]);
    let message_bad_record = request(&[&s("bad.msg"), &et, &s("not a map"), &chunk_opt("msg")]);
    assert_eq!(
        probe(port, &bad_tag, 9),
        Outcome::Replied(ack_bytes("tag")),
        "non-string tag"
    );
    assert_eq!(
        probe(port, &mixed, 11),
        Outcome::Replied(ack_bytes("mixed")),
        "mixed events"
    );
    assert_eq!(
        probe(port, &message_bad_record, 9),
        Outcome::Replied(ack_bytes("msg")),
        "bad record"
    );
    // A top-level object that is not an array is ignored; then a valid request is acked.
    let mut not_array = s("hello");
    not_array.extend(forward_request(
        "bad.after",
        &[(t as i64, "kept-2".into())],
        Some("after"),
        0,
    ));
    assert_eq!(
        probe(port, &not_array, 11),
        Outcome::Replied(ack_bytes("after")),
        "not an array"
    );
    // Options that are not a map: the event is kept, no ack asked.
    let opt_not_map = request(&[
        &s("bad.opt"),
        &[&[0x91][..], &entry(&et, &ok_record("kept-3"))].concat(),
        &s("x"),
    ]);
    let mut then_valid = opt_not_map.clone();
    then_valid.extend(forward_request(
        "bad.opt",
        &[(t as i64, "kept-4".into())],
        Some("opt"),
        0,
    ));
    assert_eq!(
        probe(port, &then_valid, 9),
        Outcome::Replied(ack_bytes("opt")),
        "option not a map"
    );

    // Slowloris and a connection flood at the same time: 40 connections
    // holding half a request each, 500 connect/close in a row.
    let half = &valid[..valid.len() / 2];
    let slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect(port).unwrap();
            s.write_all(half).unwrap();
            s
        })
        .collect();
    let before = good_acked.lock().unwrap().len();
    for _ in 0..500 {
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    // The good client keeps getting acks throughout.
    let flowing = wait_until(Duration::from_secs(10), || {
        good_acked.lock().unwrap().len() > before + 50
    });
    assert!(flowing, "the good client stalled under slowloris + flood");
    drop(slow);

    stop.store(true, Ordering::Relaxed);
    good.join().expect("good client ran clean");
    assert!(weir.is_running(), "weir died\n{}", weir.log());

    let mut want: Vec<String> = good_acked.lock().unwrap().clone();
    want.extend(["kept-1", "kept-2", "kept-3", "kept-4"].map(String::from));
    let drained = wait_until(Duration::from_secs(150), || {
        std::fs::read_dir(weir.data_dir().join("roll/open"))
            .map(|d| d.count() == 0)
            .unwrap_or(false)
            && !weir.output_files().is_empty()
    });
    assert!(drained, "files not finished\n{}", weir.log());
    let rows = read_rows(&weir.out_dir());
    let ids: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| r.record["id"].as_str().unwrap_or("").to_string())
        .collect();
    for id in &want {
        assert!(ids.contains(id), "{id} missing");
    }
    for id in ["lost-tag", "bad-time", "nil-time", "v"] {
        assert!(!ids.contains(id), "{id} should not be stored");
    }
    let log = weir.log();
    for needle in [
        "malformed msgpack",
        "max_buffer_bytes",
        "exceed the",
        "unknown compression",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}");
    }
}
