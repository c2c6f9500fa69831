//! Freshness (issue 14): with `roll.freshness`, the README's DuckDB query
//! over a sink two nodes write to is complete (everything acked more than
//! the freshness delay ago) and duplicate-free at every sample, across the
//! seal of a period;
//! afterwards only the period's one file per tag is left, its previews are
//! removed, and a sink without `fresh = true` never gets a preview.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::servers::*;

/// `roll.freshness` in the test.
const FRESHNESS: Duration = Duration::from_secs(5);
/// Time from a preview's write to its rows being readable: the roller's
/// tick, the outbox and the local sink, on a busy CI machine.
const SLACK: Duration = Duration::from_secs(10);

/// What a client had acked: (when, the request's ids).
type Acked = Vec<(Instant, Vec<String>)>;

fn query(root: &std::path::Path) -> Vec<String> {
    let out = run_ok(
        Command::new(python())
            .arg(support("fresh_query.py"))
            .arg(root),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fresh_files(root: &std::path::Path) -> Vec<String> {
    let fresh = root.join("_fresh");
    if !fresh.exists() {
        return Vec::new();
    }
    list_files(&fresh)
}

#[test]
fn the_fresh_query_is_complete_and_duplicate_free_across_a_seal() {
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3_root.path());
    let lake = tempfile::tempdir().unwrap();
    let extra = format!(
        "[roll]\nperiod = \"1m\"\ngrace = \"2s\"\nfreshness = \"{}s\"\n\
         [sinks.lake]\ntype = \"local\"\npath = \"{}\"\nfresh = true\n{}\
         [[route]]\nmatch = \"**\"\nsinks = [\"lake\", \"warehouse\"]\n",
        FRESHNESS.as_secs(),
        lake.path().display(),
        s3.sink_toml("warehouse", "dwh"),
    );
    // Two nodes of a tier, n1 and n2, writing to the same sinks.
    let weir = Weir::start(&extra);
    let mut weir2 = Weir::create_full("", "", &extra);
    let config2 = std::fs::read_to_string(&weir2.config_path).unwrap();
    std::fs::write(
        &weir2.config_path,
        config2.replace("node_id = \"n1\"", "node_id = \"n2\""),
    )
    .unwrap();
    weir2.spawn();
    let root = lake.path().to_path_buf();

    // A client sending all along, to both nodes: (when acked, ids).
    let acked: Arc<Mutex<Acked>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, ports) = (acked.clone(), stop.clone(), [weir.port, weir2.port]);
        std::thread::spawn(move || {
            let mut conns = ports.map(|p| connect(p).unwrap());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tag = if n.is_multiple_of(2) {
                    "app.a"
                } else {
                    "app.b"
                };
                let events: Vec<(i64, String)> = (0..20)
                    .map(|i| (now_secs(), format!("{tag}-{n}-{i}")))
                    .collect();
                let chunk = format!("c{n}");
                let s = &mut conns[(n / 2 % 2) as usize];
                send_acked(s, &forward_request(tag, &events, Some(&chunk), 30), &chunk).unwrap();
                acked.lock().unwrap().push((
                    Instant::now(),
                    events.into_iter().map(|(_, id)| id).collect(),
                ));
                n += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Sample until a period has been sealed and its previews removed.
    // The minute the test started in, or the next if this one is nearly
    // over (its seal must come after previews of it were read).
    let t0 = now_secs();
    let sealed_minute = t0 / 60 + i64::from(t0 % 60 > 40);
    let sealed_dir = |tag: &str| {
        minute_key(tag, sealed_minute * 60)
            .rsplit_once('/')
            .unwrap()
            .0
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(200);
    let mut samples = 0;
    let mut samples_with_previews = 0;
    let mut samples_during_seal = 0;
    loop {
        let asked = Instant::now();
        let rows = query(&root);
        let sent: BTreeSet<String> = acked
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, ids)| ids.clone())
            .collect();
        let must: BTreeSet<String> = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at + FRESHNESS + SLACK < asked)
            .flat_map(|(_, ids)| ids.clone())
            .collect();
        let mut seen = BTreeMap::new();
        for id in &rows {
            *seen.entry(id.clone()).or_insert(0) += 1;
        }
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            dups.is_empty(),
            "sample {samples}: duplicates {:?}\nfiles: {:#?}",
            &dups[..dups.len().min(5)],
            list_files(&root)
        );
        let unknown: Vec<_> = seen.keys().filter(|id| !sent.contains(*id)).collect();
        assert!(
            unknown.is_empty(),
            "sample {samples}: never acked {unknown:?}"
        );
        let missing: Vec<_> = must.iter().filter(|id| !seen.contains_key(*id)).collect();
        assert!(
            missing.is_empty(),
            "sample {samples}: {} acked over {:?} ago missing, e.g. {:?}\n{}",
            missing.len(),
            FRESHNESS + SLACK,
            &missing[..missing.len().min(5)],
            weir.log()
        );
        samples += 1;
        let previews = fresh_files(&root);
        let sealed_present = ["n1", "n2"].iter().all(|n| {
            root.join(sealed_dir("app.a"))
                .join(format!("{n}.parquet"))
                .exists()
        });
        let sealed_previews = previews
            .iter()
            .filter(|f| f.starts_with(&sealed_dir("app.a")) || f.starts_with(&sealed_dir("app.b")))
            .count();
        if !previews.is_empty() {
            samples_with_previews += 1;
        }
        if sealed_present && sealed_previews > 0 {
            samples_during_seal += 1;
        }
        if sealed_present && sealed_previews == 0 && samples_during_seal > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no seal with previews removed in time ({samples} samples, {samples_during_seal} during the seal)\n{}\n{}",
            weir.log(),
            weir2.log()
        );
        std::thread::sleep(Duration::from_secs(2).saturating_sub(asked.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    eprintln!("{samples} samples, {samples_with_previews} with previews, {samples_during_seal} while the sealed file and its previews were both there");
    assert!(
        samples_with_previews >= 3,
        "previews were read: {samples_with_previews}"
    );

    // The sealed minute: one file per tag and node in the hourly layout,
    // no preview.
    for tag in ["app.a", "app.b"] {
        let dir = root.join(sealed_dir(tag));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["n1.parquet", "n2.parquet"], "{}", dir.display());
    }
    let m = scrape(weir.metrics_port);
    assert!(metric(&m, "weir_roll_files_finished_total", &[("kind", "preview")]) >= 3.0);
    assert!(metric(&m, "weir_fresh_previews_removed_total", &[("sink", "lake")]) >= 2.0);

    // The warehouse sink (no `fresh`) has the hourly files and no preview.
    let (objects, _) = read_bucket(&s3.endpoint(), S3Server::BUCKET);
    assert!(!objects.is_empty());
    let previews: Vec<_> = objects.keys().filter(|k| k.contains("_fresh")).collect();
    assert!(previews.is_empty(), "{previews:?}");
    for node in ["n1", "n2"] {
        assert!(objects
            .keys()
            .any(|k| k.ends_with(&format!("{}/{node}.parquet", sealed_dir("app.a")))));
    }
}

/// Sends one acked request of 20 events; returns their ids.
fn send_one(port: u16, tag: &str, n: u64) -> Vec<String> {
    let events: Vec<(i64, String)> = (0..20)
        .map(|i| (now_secs(), format!("{tag}-{n}-{i}")))
        .collect();
    let mut s = connect(port).unwrap();
    let chunk = format!("k{n}");
    send_acked(
        &mut s,
        &forward_request(tag, &events, Some(&chunk), 30),
        &chunk,
    )
    .unwrap();
    events.into_iter().map(|(_, id)| id).collect()
}

/// Polls the query until it returns exactly `want`, failing on any
/// duplicate on the way.
fn wait_for_exactly(weir: &Weir, root: &std::path::Path, want: &BTreeSet<String>) {
    let ok = wait_until(Duration::from_secs(60), || {
        let rows = query(root);
        let set: BTreeSet<String> = rows.iter().cloned().collect();
        assert_eq!(set.len(), rows.len(), "duplicates: {:?}", list_files(root));
        assert!(set.is_subset(want), "rows never sent");
        set == *want
    });
    assert!(ok, "query never returned every event\n{}", weir.log());
}

/// A node with period 1h (nothing is sealed during a test) sending to one
/// local sink at `out` that takes previews every `freshness`.
fn fresh_lake_node(out: &std::path::Path, freshness: &str) -> Weir {
    Weir::start(&format!(
        "[roll]\nperiod = \"1h\"\ngrace = \"2s\"\nfreshness = \"{freshness}\"\n\
         [sinks.lake]\ntype = \"local\"\npath = \"{}\"\nfresh = true\n\
         [[route]]\nmatch = \"**\"\nsinks = [\"lake\"]\n",
        out.display(),
    ))
}

/// Makes the local sink at `out` fail for previews (its `_fresh` folder,
/// if any, is moved to `away` and a file put in its place; the sink itself
/// still opens, so a node can start) or work again.
fn break_sink(out: &std::path::Path, away: &std::path::Path) {
    let fresh = out.join("_fresh");
    if fresh.exists() {
        std::fs::rename(&fresh, away).unwrap();
    }
    std::fs::write(&fresh, b"down").unwrap();
}

fn repair_sink(out: &std::path::Path, away: &std::path::Path) {
    let fresh = out.join("_fresh");
    std::fs::remove_file(&fresh).unwrap();
    if away.exists() {
        std::fs::rename(away, &fresh).unwrap();
    }
}

fn previews_written(weir: &Weir) -> f64 {
    metric(
        &scrape(weir.metrics_port),
        "weir_roll_files_finished_total",
        &[("kind", "preview")],
    )
}

#[test]
fn a_crash_rebuilds_previews_without_writing_rows_twice() {
    let lake = tempfile::tempdir().unwrap();
    let (out, away) = (lake.path().join("out"), lake.path().join("away"));
    let mut weir = fresh_lake_node(&out, "2s");
    // The sink fails: previews wait in the outbox, across the crash and the
    // replay. A replay that previewed the same rows again, with other
    // boundaries, would rewrite a waiting preview with more rows than it
    // had, and the next one would hold some of them too.
    break_sink(&out, &away);
    let mut sent = BTreeSet::new();
    for n in 0..4 {
        sent.extend(send_one(weir.port, "crash.fresh", n));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let previewed = wait_until(Duration::from_secs(30), || previews_written(&weir) >= 3.0);
    assert!(previewed, "previews not written\n{}", weir.log());

    weir.kill9();
    weir.spawn();
    for n in 4..8 {
        sent.extend(send_one(weir.port, "crash.fresh", n));
        std::thread::sleep(Duration::from_millis(500));
    }
    // The restarted node has replayed the WAL and written a preview of its
    // own while the old ones still wait; only then does the sink come back.
    let replayed = wait_until(Duration::from_secs(30), || previews_written(&weir) >= 1.0);
    assert!(replayed, "no preview after the restart\n{}", weir.log());
    repair_sink(&out, &away);
    wait_for_exactly(&weir, &out, &sent);
    assert!(fresh_files(&out).len() >= 4, "{:?}", fresh_files(&out));
}

/// The request numbers present in a sample must be 0..k with no gap: a
/// reader never sees a later preview without the earlier ones.
fn assert_no_gap(rows: &[String], files: &[String]) {
    let mut requests = BTreeMap::<u64, usize>::new();
    for id in rows {
        let n: u64 = id.split('-').nth(1).unwrap().parse().unwrap();
        *requests.entry(n).or_insert(0) += 1;
    }
    let k = requests.len() as u64;
    let gapless = requests.keys().copied().eq(0..k);
    assert!(
        gapless && requests.values().all(|c| *c == 20),
        "a gap or a partial request: {requests:?}\n{files:?}"
    );
}

#[test]
fn previews_held_back_by_a_sink_outage_arrive_in_order() {
    let lake = tempfile::tempdir().unwrap();
    let (out, away) = (lake.path().join("out"), lake.path().join("away"));
    let weir = fresh_lake_node(&out, "1s");
    let mut sent = BTreeSet::new();
    let mut s = connect(weir.port).unwrap();
    let started = Instant::now();
    let mut n = 0u64;
    let mut broken = false;
    let mut repaired = false;
    while started.elapsed() < Duration::from_secs(24) {
        let events: Vec<(i64, String)> = (0..20)
            .map(|i| (now_secs(), format!("o-{n}-{i}")))
            .collect();
        let chunk = format!("o{n}");
        send_acked(
            &mut s,
            &forward_request("outage.t", &events, Some(&chunk), 30),
            &chunk,
        )
        .unwrap();
        sent.extend(events.into_iter().map(|(_, id)| id));
        n += 1;
        let t = started.elapsed();
        if !broken && t > Duration::from_secs(4) {
            break_sink(&out, &away);
            broken = true;
        }
        if broken && !repaired && t > Duration::from_secs(14) {
            repair_sink(&out, &away);
            repaired = true;
        }
        if repaired {
            assert_no_gap(&query(&out), &fresh_files(&out));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let ok = wait_until(Duration::from_secs(60), || {
        let rows = query(&out);
        assert_no_gap(&rows, &fresh_files(&out));
        rows.len() == sent.len()
    });
    assert!(ok, "not every event arrived\n{}", weir.log());
}
