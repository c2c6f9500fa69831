//! Drain, for a permanent scale-down: the open period's file is finished
//! and delivered at stop (`drain-on-exit` marker) or by `weir drain` on a
//! stopped node's data_dir; a later start on the same data stores nothing
//! twice; an undeliverable drain fails loudly.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Hourly files, so the open file can only be finished by a drain.
const HOURLY: &str = "[roll]\nperiod = \"1h\"\ngrace = \"1s\"\n";

fn send(weir: &Weir, tag: &str, requests: usize) -> usize {
    let mut s = connect(weir.port).unwrap();
    let t = now_secs();
    for r in 0..requests {
        let ids: Vec<(i64, String)> = (0..100).map(|i| (t, format!("{r}-{i}"))).collect();
        let chunk = format!("{tag}-{r}");
        send_acked(
            &mut s,
            &forward_request(tag, &ids, Some(&chunk), 10),
            &chunk,
        )
        .unwrap();
    }
    requests * 100
}

#[test]
fn drain_marker_ships_the_open_hour_and_a_restart_adds_nothing() {
    let mut weir = Weir::start(HOURLY);
    let sent = send(&weir, "drain.a", 3);
    let marker = weir.data_dir().join("drain-on-exit");
    std::fs::write(&marker, b"").unwrap();
    assert!(weir.terminate().success(), "{}", weir.log());
    // Delivered before exit: no waiting for the hour to end.
    let files = weir.output_files();
    assert_eq!(files.len(), 1, "{files:?}\n{}", weir.log());
    assert!(files[0].starts_with("drain.a/"), "{files:?}");
    assert_eq!(read_rows(&weir.out_dir()).len(), sent);

    // Back on the same data: the marker is gone, the WAL's events are
    // recognised as already in a finished file, nothing is written twice.
    weir.spawn();
    assert!(!marker.exists());
    let skipped = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_roll_replay_skipped_events_total",
            &[],
        ) == sent as f64
    });
    assert!(skipped, "{}", weir.log());
    assert!(weir.terminate().success());
    assert_eq!(weir.output_files(), files);
    assert_eq!(read_rows(&weir.out_dir()).len(), sent);
}

#[test]
fn weir_drain_ships_what_a_killed_node_left_and_fails_when_it_cannot() {
    // A sink that refuses connections alongside the local folder.
    let dead = format!(
        "[sinks.dead]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = true\nregion = \"us-east-1\"\naccess_key_id = \"x\"\nsecret_access_key = \"x\"\n",
        free_port()
    );
    for (sinks, ok) in [("", true), (dead.as_str(), false)] {
        let mut weir = Weir::start(&format!("{HOURLY}{sinks}"));
        let sent = send(&weir, "drain.b", 2);
        weir.kill9();
        assert!(weir.output_files().is_empty());
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["drain", "--timeout", "3s", "-c"])
            .arg(&weir.config_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{stderr}");
        if !ok {
            assert!(stderr.contains("drain incomplete"), "{stderr}");
        }
        // The local folder got the file either way.
        assert_eq!(weir.output_files().len(), 1, "{stderr}");
        assert_eq!(read_rows(&weir.out_dir()).len(), sent);
    }
}
