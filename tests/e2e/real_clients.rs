//! Real forward clients written by others send known events to a real weir;
//! DuckDB reads the finished Parquet back and every event must be there with
//! its time, tag and fields.
//!
//! Clients: `@fluent-org/logger` (npm) in all four modes with ack,
//! `fluent-logger` (npm) in its three modes with requireAckResponse, and the
//! Python `fluent-logger` (Message mode, EventTime).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const COUNT: usize = 200;

struct Client {
    /// Tag label (the tag is `rc.{label}`).
    label: &'static str,
    cmd: Command,
    /// Nanoseconds added to the start second for event i.
    nanos: fn(usize) -> i64,
    client: &'static str,
    mode: Option<&'static str>,
}

fn node(script: &str, port: u16, mode: &str, label: &str, start: i64) -> Command {
    let mut c = Command::new("node");
    c.env("NODE_PATH", node_path()).arg(support(script)).args([
        &port.to_string(),
        mode,
        "rc",
        label,
        &COUNT.to_string(),
        &start.to_string(),
    ]);
    c
}

#[test]
fn events_from_real_clients_land_in_parquet_exactly() {
    let weir = Weir::start("");
    let port = weir.port;
    let start = now_secs();
    let fluent_org = |i: usize| i as i64 * 1000 + 7;
    let fluent_logger = |i: usize| i as i64 * 1000 + 3;
    let mut clients = Vec::new();
    for (label, mode) in [
        ("fo_message", "Message"),
        ("fo_forward", "Forward"),
        ("fo_packed", "PackedForward"),
        ("fo_compressed", "CompressedPackedForward"),
    ] {
        clients.push(Client {
            label,
            cmd: node("fluent_org_client.js", port, mode, label, start),
            nanos: fluent_org,
            client: "fluent-org",
            mode: Some(mode),
        });
    }
    for (label, mode) in [
        ("fl_message", "Message"),
        ("fl_packed", "PackedForward"),
        ("fl_compressed", "CompressedPackedForward"),
    ] {
        clients.push(Client {
            label,
            cmd: node("fluent_logger_client.js", port, mode, label, start),
            nanos: fluent_logger,
            client: "fluent-logger",
            mode: Some(mode),
        });
    }
    let mut py = Command::new(python());
    py.arg(support("python_client.py")).args([
        &port.to_string(),
        "rc",
        "py_message",
        &COUNT.to_string(),
        &start.to_string(),
    ]);
    clients.push(Client {
        label: "py_message",
        cmd: py,
        nanos: |i| (i % 4) as i64 * 250_000_000,
        client: "python",
        mode: None,
    });

    let children: Vec<_> = clients
        .iter_mut()
        .map(|c| (c.label, c.cmd.spawn().expect("spawn client")))
        .collect();
    for (label, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{label} failed: {out:?}\n{}",
            weir.log()
        );
    }

    // Each client's events fall in the minute of `start` (the last one is
    // 0.2 s later at most); the file appears when that minute + grace ends.
    let mut expected_files = BTreeSet::new();
    for c in &clients {
        let last = start + ((c.nanos)(COUNT - 1) / 1_000_000_000);
        expected_files.insert(minute_key(&format!("rc.{}", c.label), start));
        expected_files.insert(minute_key(&format!("rc.{}", c.label), last));
    }
    let ok = wait_until(Duration::from_secs(150), || {
        let files: BTreeSet<String> = weir.output_files().into_iter().collect();
        expected_files.is_subset(&files)
    });
    assert!(
        ok,
        "files missing: want {expected_files:?}, have {:?}\n{}",
        weir.output_files(),
        weir.log()
    );
    assert_eq!(
        weir.output_files().into_iter().collect::<BTreeSet<_>>(),
        expected_files,
        "exactly one file per (tag, minute)"
    );

    let rows = read_rows(&weir.out_dir());
    let mut by_tag: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_tag.entry(r.tag.clone()).or_default().push(r);
    }
    for c in &clients {
        let tag = format!("rc.{}", c.label);
        let got = by_tag.remove(&tag).unwrap_or_default();
        assert_eq!(got.len(), COUNT, "{tag}: row count");
        let mut seen = BTreeSet::new();
        for r in got {
            let i = r.record["i"].as_u64().expect("i") as usize;
            assert!(seen.insert(i), "{tag}: event {i} twice");
            let want_us = (start * 1_000_000_000 + (c.nanos)(i)) / 1000;
            assert_eq!(r.time_us, want_us, "{tag}: time of event {i}");
            assert_eq!(r.record["msg"], format!("m-{i}"), "{tag}");
            assert_eq!(r.record["client"], c.client, "{tag}");
            if let Some(mode) = c.mode {
                assert_eq!(r.record["mode"], mode, "{tag}");
            }
            assert!(r.file.starts_with(&tag), "{tag} in {}", r.file);
        }
    }
    assert!(by_tag.is_empty(), "unexpected tags: {:?}", by_tag.keys());
}
