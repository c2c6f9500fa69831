//! Invariants 1 and 2: ack means durable, nothing acked is lost.
//!
//! A real `weir serve` child takes acked traffic from several connections
//! while the test kills it with SIGKILL at random moments (22 times) and
//! restarts it. Clients keep sending through every kill and behave like
//! Fluentd: a request without an ack is sent again at once, same chunk id,
//! after reconnecting. At the end every acked event must be in the finished
//! Parquet files exactly once: a resend of a chunk that was durable but
//! whose ack was lost is recognised, even after later restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use crate::common::*;

const CLIENTS: usize = 4;
const KILLS: usize = 22;
const EVENTS_PER_REQUEST: usize = 25;

struct Stats {
    acked: Vec<String>,
    resends: u64,
    /// Reconnections per client.
    reconnects: [u64; CLIENTS],
}

fn client(k: usize, port: u16, stop: Arc<AtomicBool>, stats: Arc<Mutex<Stats>>) {
    let mut conn = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<(i64, String)> = (0..EVENTS_PER_REQUEST)
            .map(|e| (now_secs(), format!("c{k}-{n}-{e}")))
            .collect();
        let chunk = format!("c{k}-r{n}");
        let req = forward_request(&format!("crash.t{}", k % 2), &ids, Some(&chunk), 100);
        // Send until acked, reconnecting as needed (what Fluentd does).
        let mut attempts = 0;
        loop {
            if conn.is_none() {
                match connect(port) {
                    Ok(s) => {
                        if n > 0 || attempts > 0 {
                            stats.lock().unwrap().reconnects[k] += 1;
                        }
                        conn = Some(s)
                    }
                    Err(_) => {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        // weir is restarting: retry shortly.
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            attempts += 1;
            let s = conn.as_mut().unwrap();
            match send_acked(s, &req, &chunk) {
                Ok(()) => break,
                Err(_) => {
                    conn = None;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // Half the clients resend at once; the others wait
                    // first, as Fluentd's retry_wait does, so their resend
                    // may reach a weir restarted more than once since.
                    if k % 2 == 1 {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
        let mut st = stats.lock().unwrap();
        st.acked.extend(ids.into_iter().map(|(_, id)| id));
        st.resends += attempts - 1;
        n += 1;
    }
}

#[test]
fn acked_events_survive_repeated_kill_9() {
    // Small segments so rotation and release happen during the test.
    let mut weir = Weir::start("[wal]\nsegment_bytes = \"256KiB\"\n");
    // Start killing ~8 s before a minute boundary, so files are finished
    // (footer, outbox commit, WAL release) while the kills go on.
    let into_minute = now_secs().rem_euclid(60);
    if !(50..54).contains(&into_minute) {
        std::thread::sleep(Duration::from_secs(
            ((52 - into_minute).rem_euclid(60)) as u64,
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(Stats {
        acked: Vec::new(),
        resends: 0,
        reconnects: [0; CLIENTS],
    }));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (stop, stats, port) = (stop.clone(), stats.clone(), weir.port);
            std::thread::spawn(move || client(k, port, stop, stats))
        })
        .collect();
    let mut rng = rand::rng();
    let acked_count = || stats.lock().unwrap().acked.len();
    for _ in 0..KILLS {
        // Let the restarted weir replay and take new traffic first, so each
        // kill lands in a different phase (replay, appends, finishing files),
        // then kill at a random moment.
        let before = acked_count();
        // A restart replays the WAL before it accepts: generous on a
        // loaded machine, still bounded.
        let progressed = wait_until(Duration::from_secs(180), || acked_count() > before);
        assert!(
            progressed,
            "{}\nno acks within 180 s of a restart",
            weir.log()
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
        weir.kill9();
        weir.spawn();
    }
    // Some traffic after the last restart too.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let stats = Arc::try_unwrap(stats).ok().unwrap().into_inner().unwrap();
    assert!(
        stats.acked.len() > 1000,
        "too little traffic: {}",
        stats.acked.len()
    );

    // Everything is finished and delivered when nothing is open in the roller
    // and nothing waits in the outbox.
    let data = weir.data_dir();
    let drain_started = std::time::Instant::now();
    let drained = wait_until(Duration::from_secs(400), || {
        let open = std::fs::read_dir(data.join("roll/open"))
            .map(|d| d.count())
            .unwrap_or(1);
        let waiting = std::fs::read_dir(data.join("outbox"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                    .count()
            })
            .unwrap_or(1);
        open == 0 && waiting == 0
    });
    assert!(
        drained,
        "{}\nfiles not finished within 400 s of the last ack",
        weir.log()
    );
    assert!(weir.is_running(), "{}\nweir died", weir.log());
    println!(
        "crash test: drained {:.1} s after the last ack",
        drain_started.elapsed().as_secs_f64()
    );

    let rows = read_rows(&weir.out_dir());
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for r in &rows {
        *count
            .entry(r.record["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let missing: Vec<_> = stats
        .acked
        .iter()
        .filter(|id| !count.contains_key(*id))
        .collect();
    let duplicates: u32 = count.values().map(|c| c - 1).sum();
    let files = weir.output_files();
    println!(
        "crash test: {KILLS} kills, {} acked events, {} rows, {} client resends, reconnects {:?}, {} duplicate events, {} files: {files:?}",
        stats.acked.len(),
        rows.len(),
        stats.resends,
        stats.reconnects,
        duplicates,
        files.len()
    );
    // Every client was sending when weir died, again and again. A client
    // that waits 500 ms before its resend sleeps through some restarts
    // (13 to 17 reconnects in 22 kills on a quiet machine, fewer when
    // restarts come faster than its wait), so it is held to a lower bound.
    for (k, &r) in stats.reconnects.iter().enumerate() {
        let least = if k % 2 == 1 { KILLS / 4 } else { KILLS / 2 } as u64;
        assert!(
            r >= least,
            "client {k} reconnected only {r} times (at least {least} expected)"
        );
    }
    assert!(
        missing.is_empty(),
        "{} acked events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let doubled: Vec<_> = count.iter().filter(|(_, &c)| c > 1).take(5).collect();
    assert_eq!(
        duplicates, 0,
        "resent chunks stored twice, e.g. {doubled:?}"
    );
    // Uniform granularity survives crashes: one period file per (tag, minute).
    for f in &files {
        assert!(
            f.ends_with("/n1.parquet") || f.contains("/n1.late-"),
            "unexpected file {f}"
        );
    }
}

/// Files finished in groups (a batch pushed out at `roll.max_open_files`,
/// committed with one set of file-system syncs) through kill -9: 600 tags
/// at a bound of 32 open files make a group every couple of requests;
/// every acked event is in exactly one finished file after 8 kills.
#[test]
fn files_finished_in_groups_survive_kill_9() {
    let mut weir = Weir::start(
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\nmax_open_files = 32\n[wal]\nsegment_bytes = \"256KiB\"\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let (stop, acked, port) = (stop.clone(), acked.clone(), weir.port);
            std::thread::spawn(move || {
                let mut conn = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<(i64, String)> = (0..5)
                        .map(|e| (now_secs(), format!("g{k}-{n}-{e}")))
                        .collect();
                    let chunk = format!("g{k}-r{n}");
                    let tag = format!("group.t{}", (n * 7 + k as u64) % 600);
                    let req = forward_request(&tag, &ids, Some(&chunk), 20);
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if conn.is_none() {
                            match connect(port) {
                                Ok(s) => conn = Some(s),
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            }
                        }
                        let Some(s) = conn.as_mut() else { continue };
                        if send_acked(s, &req, &chunk).is_ok() {
                            break;
                        }
                        conn = None;
                    }
                    acked
                        .lock()
                        .unwrap()
                        .extend(ids.into_iter().map(|(_, id)| id));
                    n += 1;
                }
            })
        })
        .collect();
    let mut rng = rand::rng();
    let count = || acked.lock().unwrap().len();
    for _ in 0..8 {
        let before = count();
        let progressed = wait_until(Duration::from_secs(60), || count() > before + 500);
        assert!(progressed, "no acks after a restart\n{}", weir.log());
        std::thread::sleep(Duration::from_millis(rng.random_range(0..500)));
        weir.kill9();
        weir.spawn();
    }
    // The last start pushes files out in groups too (traffic goes on until
    // it has: how soon depends on the machine, not on weir).
    let early = || {
        metric(
            &scrape(weir.metrics_port),
            "weir_roll_files_finished_early_total",
            &[("reason", "max_open_files")],
        )
    };
    wait_until(Duration::from_secs(120), || early() >= 32.0);
    let early = early();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    weir.drain_and_stop();
    let rows = read_rows(&weir.out_dir());
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for r in &rows {
        *count
            .entry(r.record["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let missing = acked.iter().filter(|id| !count.contains_key(*id)).count();
    let twice: u32 = count.values().map(|c| c - 1).sum();
    println!(
        "grouped finishing: 8 kills, {} acked, {} rows, {early} files finished early since the last start, {missing} missing, {twice} twice",
        acked.len(),
        rows.len()
    );
    assert!(early >= 32.0, "files were pushed out in groups: {early}");
    assert_eq!(missing, 0, "acked events lost");
    assert_eq!(twice, 0, "events stored twice");
}
