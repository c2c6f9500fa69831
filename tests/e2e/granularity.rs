//! Invariant 3: uniform granularity. Sixty concurrent connections writing
//! three tags produce exactly one file per (tag, period) for this node, and
//! events for a period that closed long ago go to a `late` file beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

const CONNECTIONS: usize = 60;
const TAGS: [&str; 3] = ["g.a", "g.b", "g.c"];

#[test]
fn many_connections_make_one_file_per_tag_and_period() {
    let weir = Weir::start("");
    let port = weir.port;
    let stop = Arc::new(AtomicBool::new(false));
    // (tag, event second) of every acked event, by id.
    let acked: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|k| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut s = connect(port).expect("connect");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tag = TAGS[(k + n) % TAGS.len()];
                    let t = now_secs();
                    let ids: Vec<(i64, String)> =
                        (0..10).map(|e| (t, format!("k{k}-{n}-{e}"))).collect();
                    let chunk = format!("k{k}-{n}");
                    send_acked(
                        &mut s,
                        &forward_request(tag, &ids, Some(&chunk), 50),
                        &chunk,
                    )
                    .expect("acked");
                    let mut a = acked.lock().unwrap();
                    for (t, id) in ids {
                        a.insert(id, (tag.to_string(), t));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // Late events: event time an hour ago, long past that period's grace.
    let old = now_secs() - 3600;
    let late_ids: Vec<(i64, String)> = (0..7).map(|e| (old, format!("late-{e}"))).collect();
    let mut s = connect(port).unwrap();
    send_acked(
        &mut s,
        &forward_request("g.a", &late_ids, Some("late"), 10),
        "late",
    )
    .unwrap();

    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    let mut want_files = BTreeSet::new();
    for (tag, t) in acked.values() {
        want_files.insert(minute_key(tag, *t));
    }
    let late_dir = minute_key("g.a", old)
        .trim_end_matches("n1.parquet")
        .to_string();
    let done = wait_until(Duration::from_secs(200), || {
        let files: BTreeSet<String> = weir.output_files().into_iter().collect();
        want_files.is_subset(&files) && files.iter().any(|f| f.starts_with(&late_dir))
    });
    assert!(
        done,
        "files missing; have {:?}\n{}",
        weir.output_files(),
        weir.log()
    );

    let files = weir.output_files();
    let late_files: Vec<_> = files.iter().filter(|f| f.starts_with(&late_dir)).collect();
    assert_eq!(late_files.len(), 1, "{late_files:?}");
    assert!(late_files[0].contains("/n1.late-"), "{late_files:?}");
    let period_files: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with(&late_dir))
        .cloned()
        .collect();
    assert_eq!(
        period_files, want_files,
        "exactly one file per (tag, minute)"
    );

    let rows = read_rows(&weir.out_dir());
    let mut seen: BTreeMap<String, &Row> = BTreeMap::new();
    for r in &rows {
        let id = r.record["id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone(), r).is_none(), "{id} twice");
    }
    for (id, (tag, t)) in &acked {
        let r = seen.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(&r.tag, tag);
        assert_eq!(r.time_us, t * 1_000_000);
        assert_eq!(r.file, minute_key(tag, *t));
    }
    for (_, id) in &late_ids {
        let r = seen.get(id).unwrap_or_else(|| panic!("late {id} missing"));
        assert_eq!(&r.file, late_files[0]);
        assert_eq!(r.time_us, old * 1_000_000);
    }
    assert_eq!(rows.len(), acked.len() + late_ids.len());
    println!(
        "granularity: {CONNECTIONS} connections, {} events, {} files",
        acked.len(),
        files.len()
    );
}
