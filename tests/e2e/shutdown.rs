//! SIGTERM: weir stops taking connections, finishes requests in flight,
//! syncs its WAL, delivers finished files before it exits (within
//! outbox.shutdown_timeout), and after a restart every acked event arrives.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn sigterm_delivers_finished_files_and_loses_no_acked_event() {
    let mut weir = Weir::start("");
    std::fs::create_dir_all(weir.out_dir()).unwrap();
    let blocker = weir.out_dir().join("term.a");
    std::fs::write(&blocker, b"in the way").unwrap();
    let t = now_secs();
    let mut s = connect(weir.port).unwrap();
    let a_ids: Vec<(i64, String)> = (0..100).map(|i| (t, format!("a{i}"))).collect();
    send_acked(
        &mut s,
        &forward_request("term.a", &a_ids, Some("a"), 10),
        "a",
    )
    .unwrap();
    drop(s);
    // term.a's file is finished but its upload fails.
    let failing = wait_until(Duration::from_secs(150), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_sink_uploads_total",
            &[("sink", "local"), ("result", "error")],
        ) >= 1.0
    });
    assert!(failing, "{}", weir.log());

    // A client keeps sending while weir is told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = {
        let (stop, acked, port) = (stop.clone(), acked.clone(), weir.port);
        std::thread::spawn(move || {
            let Ok(mut s) = connect(port) else { return };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<(i64, String)> =
                    (0..20).map(|e| (now_secs(), format!("b{n}-{e}"))).collect();
                let chunk = format!("b{n}");
                if send_acked(
                    &mut s,
                    &forward_request("term.b", &ids, Some(&chunk), 10),
                    &chunk,
                )
                .is_err()
                {
                    return;
                }
                acked
                    .lock()
                    .unwrap()
                    .extend(ids.into_iter().map(|(_, id)| id));
                n += 1;
            }
        })
    };
    let some = wait_until(Duration::from_secs(10), || {
        acked.lock().unwrap().len() >= 200
    });
    assert!(some);
    std::fs::remove_file(&blocker).unwrap();
    let asked = Instant::now();
    let status = weir.terminate();
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", weir.log());
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "took {:?}",
        asked.elapsed()
    );
    let log = weir.log();
    assert!(log.contains("stopped cleanly"), "{log}");
    // Delivered during the drain, before the process exited.
    assert!(
        weir.output_files().contains(&minute_key("term.a", t)),
        "term.a not delivered before exit: {:?}\n{log}",
        weir.output_files()
    );

    // Delivered one-sink files get no mark while running (their removal is
    // the mark), but at an orderly stop every manifest still kept for its
    // WAL records gets one, for an older build started on this data_dir.
    let names = file_names(&weir.data_dir().join("outbox"));
    let delivered: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".json"))
        .filter(|id| !names.contains(&format!("{id}.parquet")))
        .collect();
    assert!(!delivered.is_empty(), "term.a's manifest stays: {names:?}");
    for id in delivered {
        assert!(
            names.contains(&format!("{id}.local.done")),
            "{id}: {names:?}"
        );
    }

    // After a restart, every event acked before or during the stop arrives.
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    weir.spawn();
    let all = wait_until(Duration::from_secs(180), || {
        let files = weir.output_files();
        files.iter().any(|f| f.starts_with("term.b/"))
            && std::fs::read_dir(weir.data_dir().join("roll/open"))
                .map(|d| d.count() == 0)
                .unwrap_or(false)
            && metric(
                &scrape(weir.metrics_port),
                "weir_outbox_files",
                &[("sink", "local")],
            ) == 0.0
    });
    assert!(all, "{}", weir.log());
    let rows = read_rows(&weir.out_dir());
    let stored: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.tag == "term.b")
        .map(|r| r.record["id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acked events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(rows.iter().filter(|r| r.tag == "term.a").count(), 100);
}
