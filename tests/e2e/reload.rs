//! Reloading the config (SIGHUP, SIGUSR2) while traffic flows: an invalid
//! file is refused and the node goes on; a valid one adds a sink without
//! refusing a connection, and every acked event is stored once. Other
//! signals are logged.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// A client on one connection, acked request after request; it counts the
/// connections it had to open again (a reload must need none).
struct Steady {
    acked: Arc<Mutex<Vec<String>>>,
    reconnects: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Steady {
    fn start(port: u16) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let reconnects = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (acked, reconnects, stop) = (acked.clone(), reconnects.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ev: Vec<(i64, String)> =
                        (0..20).map(|i| (now_secs(), format!("s{n}-{i}"))).collect();
                    let chunk = format!("s{n}");
                    let req = forward_request("reload.x", &ev, Some(&chunk), 10);
                    loop {
                        if conn.is_none() {
                            if n > 0 {
                                reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            conn = connect(port).ok();
                        }
                        let Some(s) = conn.as_mut() else {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        };
                        if s.write_all(&req).is_ok() && read_ack(s, &chunk).is_ok() {
                            break;
                        }
                        conn = None;
                    }
                    acked
                        .lock()
                        .unwrap()
                        .extend(ev.into_iter().map(|(_, id)| id));
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            acked,
            reconnects,
            stop,
            thread,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` events are acked beyond now.
    fn wait_more(&self, more: usize, weir: &Weir) {
        let target = self.acked() + more;
        assert!(
            wait_until(Duration::from_secs(30), || self.acked() >= target),
            "acks stalled at {}\n{}",
            self.acked(),
            weir.log()
        );
    }

    fn stop(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.reconnects.load(Ordering::Relaxed))
    }
}

#[test]
fn a_reload_under_traffic_refuses_a_bad_file_and_adds_a_sink_losing_and_doubling_nothing() {
    let mut weir = Weir::create_full("", "", "");
    let second = weir.dir.path().join("second");
    let good = std::fs::read_to_string(&weir.config_path).unwrap();
    weir.spawn();
    let client = Steady::start(weir.port);
    client.wait_more(200, &weir);

    // A broken file: refused, nothing changes.
    std::fs::write(
        &weir.config_path,
        format!("{good}\n[sinks.broken]\ntype = \"s3\"\n"),
    )
    .unwrap();
    weir.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || weir
            .log()
            .contains("config reload refused")),
        "{}",
        weir.log()
    );
    client.wait_more(200, &weir);
    assert!(weir.is_running());

    // A valid one: a second sink for every route, and a [forward] change
    // that takes a restart (said, not applied).
    std::fs::write(
        &weir.config_path,
        good.replace("[forward]\n", "[forward]\nmax_connections = 500\n")
            + &format!(
                "[sinks.second]\ntype = \"local\"\npath = \"{}\"\n",
                second.display()
            ),
    )
    .unwrap();
    weir.signal("USR2");
    assert!(
        wait_until(Duration::from_secs(20), || weir
            .log()
            .contains("config reloaded")),
        "{}",
        weir.log()
    );
    let log = weir.log();
    assert!(
        log.contains("take a restart") && log.contains("[forward]"),
        "{log}"
    );
    let reloaded_at = client.acked();
    client.wait_more(300, &weir);

    // Other signals are logged, not fatal.
    weir.signal("USR1");
    assert!(
        wait_until(Duration::from_secs(10), || weir
            .log()
            .contains("signal=\"SIGUSR1\"")),
        "{}",
        weir.log()
    );
    assert!(weir.is_running());
    client.wait_more(100, &weir);
    let (acked, reconnects) = client.stop();
    assert_eq!(reconnects, 0, "the reload closed the client's connection");

    // Every acked event once in the first sink; the second has every event
    // acked since the reload (and what the rebuilt open period held).
    let ok = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_open_files", &[]) == 0.0
            && metric(&m, "weir_outbox_files", &[]) == 0.0
            && count_rows(&weir.out_dir()).0 >= acked.len() as u64
    });
    assert!(ok, "{}", weir.log());
    assert_eq!(
        count_rows(&weir.out_dir()),
        (acked.len() as u64, acked.len() as u64),
        "every acked event once\n{}",
        weir.log()
    );
    let rows = read_rows(&second);
    let ids: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| r.record["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), rows.len(), "the second sink has an event twice");
    let after: Vec<&String> = acked[reloaded_at..].iter().collect();
    let missing = after.iter().filter(|id| !ids.contains(id.as_str())).count();
    assert_eq!(
        missing, 0,
        "events acked after the reload missing from the new sink"
    );
}
