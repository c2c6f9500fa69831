//! Capture and replay: real clients send through `weir capture` (a proxy in
//! front of weir A, which also tees what it accepts via `capture_dir`); the
//! captures are replayed into a fresh weir B at 10× with times shifted,
//! and B's Parquet must hold the same events. A truncated capture replays
//! up to the damage and says so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::capture::format::{Kind, Reader};
use weir::input::forward::decode::{decode_request, DecodeLimits, Request};

use crate::common::*;

const COUNT: usize = 100;

/// Starts `weir capture` and waits for its "listening" line.
fn start_proxy(listen: u16, upstream: u16, out: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "capture",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--upstream",
            &format!("127.0.0.1:{upstream}"),
            "--json",
            "--out",
        ])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir capture");
    let mut line = String::new();
    let stderr = child.stderr.as_mut().unwrap();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    child
}

/// SIGTERM to the proxy; its JSON report of the traffic it passed.
fn stop_proxy(proxy: Child) -> Value {
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status();
    let out = proxy.wait_with_output().unwrap();
    assert!(out.status.success(), "weir capture exit: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `weir replay` with `args`; returns its JSON report and stderr.
fn replay(files: &[PathBuf], to: u16, args: &[&str]) -> (Value, String) {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("replay")
            .args(files)
            .args(["--to", &format!("127.0.0.1:{to}"), "--json"])
            .args(args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// Events in each request record of a capture, in file order.
fn request_events(path: &Path) -> Vec<(u64, usize)> {
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 30,
    };
    let mut reader = Reader::open(path).unwrap();
    let mut out = Vec::new();
    let mut at = weir::capture::format::HEADER_LEN as u64;
    for r in reader.by_ref() {
        let end = at + (weir::capture::format::RECORD_HEADER_LEN + r.payload.len()) as u64;
        if r.kind == Kind::Request {
            let n = match decode_request(&r.payload, &limits, 1).unwrap() {
                Request::Events(d) => d.batch.map_or(0, |b| b.len()),
                _ => 0,
            };
            out.push((end, n));
        }
        at = end;
    }
    assert!(reader.damage().is_none());
    out
}

#[test]
fn captured_real_traffic_replays_at_10x_into_a_fresh_weir() {
    let dir = tempfile::tempdir().unwrap();
    let tee_dir = dir.path().join("tee");
    let mut a = Weir::start_with(&format!("capture_dir = \"{}\"", tee_dir.display()), "");
    let proxy_port = free_port();
    let cap = dir.path().join("cap.wcap");
    let proxy = start_proxy(proxy_port, a.port, &cap);

    // Real clients, one after another so the capture spans some time:
    // acked Forward and PackedForward from Node, unacked Message from Python.
    let start = now_secs();
    let capture_began = Instant::now();
    let clients: [(&str, &str, Command); 3] = [
        ("fo", "Forward", {
            let mut c = Command::new("node");
            c.env("NODE_PATH", node_path())
                .arg(support("fluent_org_client.js"));
            c
        }),
        ("fl", "PackedForward", {
            let mut c = Command::new("node");
            c.env("NODE_PATH", node_path())
                .arg(support("fluent_logger_client.js"));
            c
        }),
        ("py", "", Command::new(python())),
    ];
    for (label, mode, mut cmd) in clients {
        if label == "py" {
            cmd.arg(support("python_client.py")).args([
                &proxy_port.to_string(),
                "cap",
                label,
                &COUNT.to_string(),
                &start.to_string(),
            ]);
        } else {
            cmd.args([
                &proxy_port.to_string(),
                mode,
                "cap",
                label,
                &COUNT.to_string(),
                &start.to_string(),
            ]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{label}: {out:?}\n{}", a.log());
    }
    let captured_for = capture_began.elapsed();
    // The proxy saw every event and timed the upstream's acks.
    let seen = stop_proxy(proxy);
    assert_eq!(seen["events_sent"], 3 * COUNT as u64, "{seen}");
    assert_eq!(seen["events_acked"], 2 * COUNT as u64, "{seen}");
    assert!(
        seen["ack_latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{seen}"
    );
    // weir A stops too, closing its tee files.
    assert!(a.terminate().success());

    let mut expected: BTreeMap<(String, u64), i64> = BTreeMap::new();
    for (label, nanos) in [
        ("fo", (|i| i as i64 * 1000 + 7) as fn(usize) -> i64),
        ("fl", |i| i as i64 * 1000 + 3),
        ("py", |i| (i % 4) as i64 * 250_000_000),
    ] {
        for i in 0..COUNT {
            let ns = start * 1_000_000_000 + nanos(i);
            expected.insert((format!("cap.{label}"), i as u64), ns / 1000);
        }
    }
    let total = expected.len() as u64;

    // The proxy's capture, at 10×, into a fresh weir.
    let b = Weir::start("");
    let replay_began = now_secs();
    let (r, _) = replay(
        std::slice::from_ref(&cap),
        b.port,
        &["--speed", "10", "--shift-time"],
    );
    assert_eq!(r["events_sent"], total, "{r}");
    assert_eq!(
        r["events_acked"],
        2 * COUNT as u64,
        "acked as the originals were: {r}"
    );
    assert_eq!(r["failed_requests"], 0, "{r}");
    // Captured timing is kept, scaled: the replay cannot be shorter than a
    // tenth of the span between the first and last captured request.
    let records: Vec<_> = Reader::open(&cap).unwrap().collect();
    let requests: Vec<_> = records.iter().filter(|r| r.kind == Kind::Request).collect();
    let span_us = requests.last().unwrap().offset_us - requests[0].offset_us;
    assert!(span_us > 100_000, "span {span_us} µs over {captured_for:?}");
    assert!(
        r["seconds"].as_f64().unwrap() >= span_us as f64 / 1e6 / 10.0 * 0.95,
        "{r} vs span {span_us} µs"
    );

    // weir A's own tee of the same traffic, retagged, as fast as possible.
    let mut tee_files: Vec<PathBuf> = std::fs::read_dir(&tee_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tee_files.sort();
    assert!(!tee_files.is_empty());
    let (r, _) = replay(
        &tee_files,
        b.port,
        &[
            "--max",
            "--retag",
            "tee.{tag}",
            "--shift-time",
            "--connections",
            "2",
        ],
    );
    assert_eq!(r["events_sent"], total, "tee: {r}");

    // A capture cut in the middle of its last request replays up to there.
    let whole = std::fs::read(&cap).unwrap();
    let per_request = request_events(&cap);
    let (last_end, last_events) = *per_request.last().unwrap();
    assert!(last_events > 0);
    let cut_at = last_end as usize - 5;
    let damaged = dir.path().join("damaged.wcap");
    std::fs::write(&damaged, &whole[..cut_at]).unwrap();
    let (r, stderr) = replay(
        std::slice::from_ref(&damaged),
        b.port,
        &["--max", "--retag", "damaged.{tag}", "--shift-time"],
    );
    let want_damaged = total - last_events as u64;
    assert_eq!(r["events_sent"], want_damaged, "{r}");
    assert!(
        stderr.contains("damaged capture") && stderr.contains("truncated record"),
        "{stderr}"
    );
    assert!(r["capture_damage"][0]
        .as_str()
        .unwrap()
        .contains("damaged.wcap"));

    // Looping until a deadline: more than one pass, every event sent stored.
    let (r, _) = replay(
        std::slice::from_ref(&cap),
        b.port,
        &[
            "--max",
            "--loop",
            "--duration",
            "2s",
            "--retag",
            "loop.{tag}",
            "--shift-time",
        ],
    );
    let looped = r["events_sent"].as_u64().unwrap();
    assert!(looped > total, "--loop made one pass only: {r}");
    assert_eq!(r["failed_requests"], 0, "{r}");

    // B's Parquet: every event once per replay, times moved by one whole
    // number of milliseconds (the same for every event of a replay).
    let want_rows = 2 * total + want_damaged + looped;
    let ok = wait_until(Duration::from_secs(180), || {
        b.output_files().len() >= 3 && read_rows(&b.out_dir()).len() as u64 >= want_rows
    });
    let rows = read_rows(&b.out_dir());
    assert!(ok, "rows: {} of {want_rows}\n{}", rows.len(), b.log());
    assert_eq!(rows.len() as u64, want_rows);
    let mut shifts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut loop_rows = 0;
    for row in &rows {
        if row.tag.starts_with("loop.") {
            loop_rows += 1;
            continue;
        }
        let (kind, tag) = match row.tag.split_once('.') {
            Some(("tee", t)) => ("tee", t.to_string()),
            Some(("damaged", t)) => ("damaged", t.to_string()),
            _ => ("proxy", row.tag.clone()),
        };
        let i = row.record["i"].as_u64().unwrap();
        let original = expected[&(tag.clone(), i)];
        assert!(seen.insert((kind, tag, i)), "{kind}: event twice: {row:?}");
        assert_eq!(row.record["msg"], format!("m-{i}"));
        shifts.entry(kind).or_default().push(row.time_us - original);
    }
    for (kind, s) in &shifts {
        let first = s[0];
        assert!(s.iter().all(|&d| d == first), "{kind}: shifts differ");
        assert_eq!(first % 1000, 0, "{kind}: whole milliseconds");
        // Moved to when the replay began (the capture began at `start`,
        // give or take how long the first client took to start: a loaded
        // machine can need seconds for a Node process).
        let secs = first / 1_000_000;
        let lo = replay_began - start - 10;
        assert!(
            secs >= lo && secs <= now_secs() - start,
            "{kind}: shift {secs}s"
        );
    }
    assert_eq!(shifts.len(), 3);
    assert_eq!(loop_rows, looped);
}

#[test]
fn capture_passes_the_shared_key_handshake_and_replay_does_its_own() {
    let weir = Weir::start_with(
        "[forward.security]\nself_hostname = \"weir\"\nshared_key = \"k\"\n",
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("hs.wcap");
    let proxy_port = free_port();
    let proxy = start_proxy(proxy_port, weir.port, &cap);
    loadgen(
        &format!("127.0.0.1:{proxy_port}"),
        &[
            "--connections",
            "2",
            "--requests",
            "5",
            "--events-per-request",
            "100",
            "--shared-key",
            "k",
        ],
    );
    let seen = stop_proxy(proxy);
    assert_eq!(seen["events_acked"], 1000, "{seen}");

    // The handshake's PING is not in the capture: every request is events.
    let per_request = request_events(&cap);
    assert_eq!(per_request.len(), 10);
    assert!(
        per_request.iter().all(|&(_, n)| n == 100),
        "{per_request:?}"
    );

    // Replay authenticates by itself; without the key the server refuses.
    let (r, _) = replay(
        std::slice::from_ref(&cap),
        weir.port,
        &["--max", "--shared-key", "k"],
    );
    assert_eq!(r["events_acked"], 1000, "{r}");
    let refused = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("replay")
        .arg(&cap)
        .args([
            "--to",
            &format!("127.0.0.1:{}", weir.port),
            "--max",
            "--ack-timeout",
            "5s",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let m = scrape(weir.metrics_port);
    assert_eq!(metric(&m, "weir_forward_events_total", &[]), 2000.0);
}

#[test]
fn a_capture_written_from_the_spec_alone_replays() {
    let weir = Weir::start("");
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("spec.wcap");
    run_ok(
        Command::new(python())
            .arg(support("write_capture.py"))
            .arg(&cap)
            .args(["300", "--torn"]),
    );
    let accepted = |m: &[Sample]| metric(m, "weir_forward_connections_accepted_total", &[]);
    let before = accepted(&scrape(weir.metrics_port));
    let (r, stderr) = replay(std::slice::from_ref(&cap), weir.port, &["--max"]);
    assert_eq!(r["events_acked"], 300, "{r}");
    assert!(stderr.contains("truncated record"), "{stderr}");
    let m = scrape(weir.metrics_port);
    assert_eq!(metric(&m, "weir_forward_events_total", &[]), 300.0);
    // One connection per captured connection.
    assert_eq!(accepted(&m) - before, 300.0, "before {before}: {r}");
}
