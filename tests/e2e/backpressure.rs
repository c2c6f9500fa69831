//! Invariant 4, bounded memory: a sink that cannot keep up (Treasure Data
//! down) fills the outbox to its limit, the roller pauses, the WAL's backlog
//! reaches wal.max_backlog_bytes and weir stops reading sockets. Clients flood it meanwhile; weir's
//! RSS stays bounded, and when the sink returns every acked event arrives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::servers::*;

#[test]
fn a_stuck_sink_brings_backpressure_not_memory_growth() {
    let td_port = free_port();
    let extra = format!(
        "{}[[route]]\nmatch = \"**\"\nsinks = [\"td\"]\n[outbox]\nmax_backlog_bytes = \"256KiB\"\n[wal]\nmax_backlog_bytes = \"8MiB\"\n",
        TdServer::sink_toml_for("td", td_port)
    );
    let weir = Weir::start(&extra);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(0usize));
    let blasters: Vec<_> = (0..8)
        .map(|k| {
            let (stop, acked, port) = (stop.clone(), acked.clone(), weir.port);
            std::thread::spawn(move || {
                let mut s = connect(port).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<(i64, String)> = (0..500)
                        .map(|e| (now_secs(), format!("b{k}-{n}-{e}")))
                        .collect();
                    let chunk = format!("b{k}-{n}");
                    send_acked(
                        &mut s,
                        &forward_request("bp.flood", &ids, Some(&chunk), 200),
                        &chunk,
                    )
                    .expect("acked, however late");
                    *acked.lock().unwrap() += ids.len();
                    n += 1;
                }
            })
        })
        .collect();
    let (mut max_rss, mut blocked, mut pressed) = (0u64, false, false);
    // While the roller is paused the WAL holds acked records it has not
    // read: its lag metrics must say so.
    let (mut lag_records, mut lag_seconds) = (0f64, 0f64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        max_rss = max_rss.max(weir.rss_kib());
        let m = scrape(weir.metrics_port);
        blocked |= metric(&m, "weir_outbox_blocked", &[]) == 1.0;
        pressed |= metric(&m, "weir_backpressure_active", &[]) == 1.0;
        if pressed {
            lag_records = lag_records.max(metric(&m, "weir_roll_lag_records", &[]));
            lag_seconds = lag_seconds.max(metric(&m, "weir_roll_lag_seconds", &[]));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let acked_while_stuck = *acked.lock().unwrap();
    stop.store(true, Ordering::Relaxed);
    // The sink comes back: the backlog drains and blocked clients get acks.
    let td = TdServer::start_on(td_port);
    for b in blasters {
        b.join().expect("blaster");
    }
    let total = *acked.lock().unwrap();
    let delivered = wait_until(Duration::from_secs(120), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_outbox_files",
            &[("sink", "td")],
        ) == 0.0
            && td.state()["records"]
                .as_object()
                .unwrap()
                .values()
                .map(|p| p["rows"].as_array().unwrap().len())
                .sum::<usize>()
                >= total
    });
    println!(
        "backpressure: {acked_while_stuck} events acked while TD was down, {total} in all; peak RSS {} MiB; outbox blocked: {blocked}; socket backpressure: {pressed}; roll lag up to {lag_records} records, {lag_seconds} s",
        max_rss / 1024
    );
    assert!(
        blocked,
        "the outbox limit never paused the roller\n{}",
        weir.log()
    );
    assert!(pressed, "weir never stopped reading sockets");
    assert!(
        lag_records > 0.0 && lag_seconds > 0.0,
        "a paused roller reported no lag: {lag_records} records, {lag_seconds} s"
    );
    assert!(max_rss < 300 * 1024, "RSS grew to {} MiB", max_rss / 1024);
    assert!(
        delivered,
        "not every acked event reached TD after it returned\n{}",
        weir.log()
    );
    let caught_up = wait_until(Duration::from_secs(30), || {
        metric(&scrape(weir.metrics_port), "weir_roll_lag_records", &[]) == 0.0
    });
    assert!(caught_up, "the roller read everything but reports lag");
}
