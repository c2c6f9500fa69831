//! Decodes every vector in proto/vectors/ whole and fed one byte at a time,
//! and compares with the expected events.

use std::path::PathBuf;

use serde_json::Value;
use weir::input::forward::decode::{decode_request, DecodeLimits, Request};
use weir::msgpack::{Cursor, FrameScanner};
use weir::roll::json::write_value;

const NOW: i64 = 1_700_000_000_000_000_000;

fn vectors() -> Vec<(String, Vec<u8>, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/vectors");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("proto/vectors exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let expected: Value =
                serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap())
                    .unwrap();
            out.push((name, bytes, expected));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 18, "vectors missing: {}", out.len());
    out
}

/// Reads the ack reply `81 a3 "ack" <str or bin>` and returns the value.
fn ack_value(b: &[u8]) -> Vec<u8> {
    assert_eq!(&b[..5], &[0x81, 0xa3, b'a', b'c', b'k']);
    let mut c = Cursor::new(&b[5..]);
    let v = c.bytes().unwrap().expect("ack value is a str or bin");
    assert!(c.is_empty());
    v.to_vec()
}

fn check(name: &str, frame: &[u8], expected: &Value) {
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
    };
    let req = decode_request(frame, &limits, NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
    let d = match req {
        Request::Nil => {
            assert!(expected["mode"].is_null(), "{name}");
            return;
        }
        Request::NotArray => panic!("{name}: not an array"),
        Request::Events(d) => d,
    };
    assert_eq!(
        d.mode.as_str(),
        expected["mode"].as_str().unwrap(),
        "{name}"
    );
    let want_events = expected["events"].as_array().unwrap();
    match &d.batch {
        None => assert!(want_events.is_empty(), "{name}: no events decoded"),
        Some(batch) => {
            assert_eq!(
                std::str::from_utf8(batch.tag()).unwrap(),
                expected["tag"].as_str().unwrap(),
                "{name}"
            );
            let got: Vec<_> = batch.events().collect();
            assert_eq!(got.len(), want_events.len(), "{name}: event count");
            for (g, w) in got.iter().zip(want_events) {
                assert_eq!(g.time_ns, w["time_ns"].as_i64().unwrap(), "{name}: time");
                let mut json = String::new();
                write_value(&mut json, &mut Cursor::new(g.record)).unwrap();
                if let Some(exact) = w.get("record_json") {
                    assert_eq!(json, exact.as_str().unwrap(), "{name}: record");
                } else {
                    let v: Value = serde_json::from_str(&json).unwrap();
                    assert_eq!(&v, &w["record"], "{name}: record");
                }
            }
        }
    }
    match expected.get("ack").and_then(Value::as_str) {
        Some(chunk) => {
            let ack = d.ack.as_ref().unwrap_or_else(|| panic!("{name}: no ack"));
            assert_eq!(ack_value(ack), chunk.as_bytes(), "{name}: ack");
        }
        None => assert!(d.ack.is_none(), "{name}: unexpected ack"),
    }
    let skipped = expected.get("skipped").cloned().unwrap_or(Value::Null);
    let s = d.skipped;
    for (k, v) in [
        ("invalid_time", s.invalid_time),
        ("invalid_record", s.invalid_record),
        ("invalid_entry", s.invalid_entry),
        ("invalid_tag", s.invalid_tag),
        ("non_log_signal", s.non_log_signal),
    ] {
        assert_eq!(
            v,
            skipped.get(k).and_then(Value::as_u64).unwrap_or(0),
            "{name}: skipped {k}"
        );
    }
}

#[test]
fn every_vector_decodes_as_expected() {
    for (name, bytes, expected) in vectors() {
        check(&name, &bytes, &expected);
    }
}

#[test]
fn every_vector_decodes_when_fed_one_byte_at_a_time() {
    for (name, bytes, expected) in vectors() {
        let mut scanner = FrameScanner::new();
        for end in 0..bytes.len() {
            assert_eq!(
                scanner.scan(&bytes[..end]).unwrap(),
                None,
                "{name}: frame reported complete after {end} of {} bytes",
                bytes.len()
            );
        }
        assert_eq!(scanner.scan(&bytes).unwrap(), Some(bytes.len()), "{name}");
        check(&name, &bytes, &expected);
    }
}

#[test]
fn vectors_back_to_back_in_one_stream_split_anywhere() {
    let all = vectors();
    let stream: Vec<u8> = all.iter().flat_map(|(_, b, _)| b.clone()).collect();
    for step in [1usize, 3, 7, 64, 4096] {
        let mut buf: Vec<u8> = Vec::new();
        let mut scanner = FrameScanner::new();
        let mut frames = Vec::new();
        for piece in stream.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(len) = scanner.scan(&buf).unwrap() {
                frames.push(buf.drain(..len).collect::<Vec<u8>>());
                scanner.reset();
            }
        }
        assert!(buf.is_empty(), "step {step}: leftover bytes");
        assert_eq!(frames.len(), all.len(), "step {step}");
        for ((name, bytes, expected), frame) in all.iter().zip(&frames) {
            assert_eq!(frame, bytes, "{name}");
            check(name, frame, expected);
        }
    }
}
