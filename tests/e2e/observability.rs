//! Metrics and probes, checked against real clients and a real Prometheus
//! text parser (Python `prometheus_client`).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

fn send_with_clients(port: u16, start: i64) {
    let fo = Command::new("node")
        .env("NODE_PATH", node_path())
        .arg(support("fluent_org_client.js"))
        .args([
            &port.to_string(),
            "PackedForward",
            "obs",
            "packed",
            "300",
            &start.to_string(),
        ])
        .output()
        .unwrap();
    assert!(fo.status.success(), "{fo:?}");
    let py = Command::new(python())
        .arg(support("python_client.py"))
        .args([
            &port.to_string(),
            "obs",
            "blocked",
            "100",
            &start.to_string(),
        ])
        .output()
        .unwrap();
    assert!(py.status.success(), "{py:?}");
}

#[test]
fn metrics_follow_traffic_refusals_skips_and_failed_uploads() {
    let weir = Weir::start_with("max_connections = 3", "");
    let mp = weir.metrics_port;
    assert_eq!(http_get(mp, "/healthz").unwrap().0, 200);
    assert_eq!(
        http_get(mp, "/readyz").unwrap(),
        (200, "ready\n".to_string())
    );
    assert_eq!(http_get(mp, "/nope").unwrap().0, 404);

    // Block the local sink for tag obs.blocked: a plain file where its
    // folder must go makes every upload of that tag fail until removed.
    std::fs::create_dir_all(weir.out_dir()).unwrap();
    let blocker = weir.out_dir().join("obs.blocked");
    std::fs::write(&blocker, b"in the way").unwrap();

    let start = now_secs();
    send_with_clients(weir.port, start);

    // One event with a record that is not a map: skipped and counted.
    let mut s = connect(weir.port).unwrap();
    let mut req = vec![0x94];
    mp_str(&mut req, "obs.bad");
    req.extend([0xce]);
    req.extend((start as u32).to_be_bytes());
    mp_str(&mut req, "not a map");
    req.extend([0x81]);
    mp_str(&mut req, "chunk");
    mp_str(&mut req, "bad1");
    send_acked(&mut s, &req, "bad1").unwrap();
    drop(s);

    // Connection limit 3: hold three, the fourth is refused.
    let active = |n: f64| {
        let mut seen = 0.0;
        let ok = wait_until(Duration::from_secs(10), || {
            seen = metric(&scrape(mp), "weir_forward_connections_active", &[]);
            seen == n
        });
        assert!(ok, "{seen} connections active, want {n}\n{}", weir.log());
    };
    active(0.0);
    let refused_before = metric(&scrape(mp), "weir_forward_connections_refused_total", &[]);
    let held: Vec<_> = (0..3).map(|_| connect(weir.port).unwrap()).collect();
    active(3.0);
    let mut fourth = connect(weir.port).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut fourth, &mut buf).unwrap_or(0),
        0,
        "fourth refused"
    );
    let refused_after = metric(&scrape(mp), "weir_forward_connections_refused_total", &[]);
    assert_eq!(refused_after - refused_before, 1.0);
    drop(held);

    let m = scrape(mp);
    assert_eq!(
        metric(
            &m,
            "weir_forward_events_total",
            &[("mode", "packed_forward")]
        ),
        300.0
    );
    assert_eq!(
        metric(&m, "weir_forward_events_total", &[("mode", "message")]),
        100.0
    );
    assert_eq!(
        metric(
            &m,
            "weir_forward_events_skipped_total",
            &[("reason", "invalid_record")]
        ),
        1.0
    );
    assert!(metric(&m, "weir_forward_acks_total", &[]) >= 2.0);
    assert!(metric(&m, "weir_forward_ack_latency_seconds_count", &[]) >= 2.0);
    assert!(metric(&m, "weir_forward_received_bytes_total", &[]) > 400.0 * 20.0);
    assert!(metric(&m, "weir_wal_records_total", &[]) >= 3.0);
    assert!(metric(&m, "weir_wal_fsync_seconds_count", &[]) >= 1.0);

    // The blocked tag's file fails to upload, is retried, and shows as backlog.
    let failing = wait_until(Duration::from_secs(150), || {
        let m = scrape(mp);
        metric(
            &m,
            "weir_sink_uploads_total",
            &[("sink", "local"), ("result", "error")],
        ) >= 1.0
            && metric(&m, "weir_outbox_files", &[("sink", "local")]) >= 1.0
    });
    assert!(failing, "no failed upload seen\n{}", weir.log());
    std::fs::remove_file(&blocker).unwrap();
    let delivered = wait_until(Duration::from_secs(90), || {
        let m = scrape(mp);
        metric(&m, "weir_outbox_files", &[("sink", "local")]) == 0.0
            && metric(
                &m,
                "weir_sink_uploads_total",
                &[("sink", "local"), ("result", "ok")],
            ) >= 2.0
    });
    assert!(delivered, "backlog not delivered\n{}", weir.log());
    let m = scrape(mp);
    assert!(metric(&m, "weir_sink_retries_total", &[("sink", "local")]) >= 1.0);
    assert_eq!(
        metric(&m, "weir_roll_files_finished_total", &[("kind", "period")]),
        2.0
    );
    assert_eq!(metric(&m, "weir_roll_rows_total", &[]), 400.0);
    // Every metric on the dashboard exists.
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("dashboards/weir.json")).unwrap())
            .unwrap();
    let names: std::collections::BTreeSet<&str> = m.iter().map(|s| s.name.as_str()).collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("weir_") {
                    assert!(names.contains(word), "dashboard uses unknown metric {word}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "dashboard references {checked} metrics");
}

#[test]
fn readyz_reflects_an_unwritable_wal_directory() {
    let weir = Weir::start("");
    let mp = weir.metrics_port;
    assert_eq!(http_get(mp, "/readyz").unwrap().0, 200);
    // Swap the WAL folder for a plain file: nothing can be created there.
    let wal = weir.data_dir().join("wal");
    let moved = weir.data_dir().join("wal.moved");
    std::fs::rename(&wal, &moved).unwrap();
    std::fs::write(&wal, b"not a directory").unwrap();
    // The folder is probed every 2 s, off the request path.
    let unready = wait_until(Duration::from_secs(10), || {
        http_get(mp, "/readyz").is_ok_and(|(s, _)| s == 503)
    });
    let (status, body) = http_get(mp, "/readyz").unwrap();
    assert!(unready && status == 503, "{body}");
    assert!(body.contains("WAL directory"), "{body}");
    std::fs::remove_file(&wal).unwrap();
    std::fs::rename(&moved, &wal).unwrap();
    let ready = wait_until(Duration::from_secs(10), || {
        http_get(mp, "/readyz").is_ok_and(|r| r == (200, "ready\n".to_string()))
    });
    assert!(ready, "{:?}", http_get(mp, "/readyz"));
}

#[test]
fn backpressure_turns_readyz_unready_and_back() {
    // zstd level 22 makes the roller far slower than the WAL, so it falls
    // wal.max_backlog_bytes behind and weir stops reading sockets.
    let weir = Weir::start_full(
        "",
        "backpressure_grace = \"1s\"",
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\nzstd_level = 22\n[wal]\nmax_backlog_bytes = \"2MiB\"\n",
    );
    let mp = weir.metrics_port;
    let stop = Arc::new(AtomicBool::new(false));
    let blasters: Vec<_> = (0..6)
        .map(|k| {
            let (stop, port) = (stop.clone(), weir.port);
            std::thread::spawn(move || {
                let mut s = connect(port).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Incompressible-ish records keep zstd busy.
                    let ids: Vec<(i64, String)> = (0..200)
                        .map(|e| {
                            (
                                now_secs(),
                                format!(
                                    "{:x}",
                                    (k * 1_000_003 + n * 7919 + e)
                                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                                ),
                            )
                        })
                        .collect();
                    let chunk = format!("b{k}-{n}");
                    if send_acked(
                        &mut s,
                        &forward_request("bp.t", &ids, Some(&chunk), 300),
                        &chunk,
                    )
                    .is_err()
                    {
                        return;
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let unready = wait_until(Duration::from_secs(90), || {
        let (status, body) = http_get(mp, "/readyz").unwrap();
        status == 503 && body.contains("backpressure")
    });
    let during = scrape(mp);
    stop.store(true, Ordering::Relaxed);
    for b in blasters {
        b.join().unwrap();
    }
    assert!(unready, "never unready\n{}", weir.log());
    assert_eq!(metric(&during, "weir_backpressure_active", &[]), 1.0);
    let ready = wait_until(Duration::from_secs(180), || {
        http_get(mp, "/readyz").map(|r| r.0 == 200).unwrap_or(false)
    });
    assert!(ready, "never ready again: {:?}", http_get(mp, "/readyz"));
    let after = scrape(mp);
    assert_eq!(metric(&after, "weir_backpressure_active", &[]), 0.0);
    assert!(metric(&after, "weir_backpressure_seconds_total", &[]) > 0.0);
}
