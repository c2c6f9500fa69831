//! A full disk: the WAL leaves `wal.disk_reserve` free, so a disk that its
//! own WAL filled heals by itself once files leave for a sink elsewhere, and
//! a disk someone else filled stops acks without losing anything. Every wait
//! here is bounded and fails with weir's log; the client stops when told,
//! even while a request is unacked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;

/// A tmpfs mounted at `path` for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A client that resends each request until it is acked, as Fluentd does,
/// on one connection while it lasts; it stops within a second of being told,
/// whether or not its request was acked.
struct Resender {
    acked: Arc<Mutex<Vec<String>>>,
    /// The ids of the request being sent, not acked yet: weir may have
    /// stored it when the client stopped waiting.
    in_flight: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Resender {
    fn start(port: u16, tag: &'static str, events: usize, pad: usize) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (acked, in_flight, stop) = (acked.clone(), in_flight.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                for n in 0u64.. {
                    let t = now_secs();
                    let ev: Vec<(i64, String)> =
                        (0..events).map(|i| (t, format!("{tag}-{n}-{i}"))).collect();
                    let chunk = format!("{tag}-{n}");
                    let req = forward_request(tag, &ev, Some(&chunk), pad);
                    *in_flight.lock().unwrap() = ev.iter().map(|(_, id)| id.clone()).collect();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let s = match conn.as_mut() {
                            Some(s) => s,
                            None => match connect(port) {
                                Ok(s) => {
                                    s.set_read_timeout(Some(Duration::from_millis(500)))
                                        .unwrap();
                                    s.set_write_timeout(Some(Duration::from_millis(500)))
                                        .unwrap();
                                    conn.insert(s)
                                }
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                }
                            },
                        };
                        let sent = s.write_all(&req).is_ok();
                        if sent && wait_ack(s, &chunk, &stop) {
                            break;
                        }
                        // Closed, or told to stop: resend on a new connection
                        // (weir stores a resent chunk once).
                        conn = None;
                    }
                    acked
                        .lock()
                        .unwrap()
                        .extend(ev.into_iter().map(|(_, id)| id));
                    in_flight.lock().unwrap().clear();
                }
            })
        };
        Self {
            acked,
            in_flight,
            stop,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the client (within a second); every acked id, and the ids of
    /// the request it was waiting for (stored or not).
    fn stop(mut self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("client thread");
        }
        let acked = self.acked.lock().unwrap().clone();
        let in_flight = self.in_flight.lock().unwrap().clone();
        (acked, in_flight)
    }
}

impl Drop for Resender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits for the ack of `chunk`, reading in short slices so a stop is seen;
/// false on a closed connection, a wrong ack or a stop.
fn wait_ack(s: &mut TcpStream, chunk: &str, stop: &AtomicBool) -> bool {
    let mut want = vec![0x81, 0xa3, b'a', b'c', b'k'];
    mp_str(&mut want, chunk);
    let mut got = Vec::with_capacity(want.len());
    let mut buf = vec![0u8; want.len()];
    while got.len() < want.len() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match s.read(&mut buf[..want.len() - got.len()]) {
            Ok(0) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    got == want
}

/// Waits until acks have not moved for 3 s (and some were made): the node
/// stopped taking appends.
fn wait_stalled(client: &Resender, weir: &Weir, within: Duration) {
    let start = Instant::now();
    let mut last = (client.acked(), Instant::now());
    loop {
        let now = client.acked();
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "acks never stopped ({now} acked)\n{}",
            weir.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every acked event is in the sink's files, each once; the
/// request in flight when the client stopped may be there too (whole), and
/// nothing else.
fn assert_delivered_once(weir: &Weir, (acked, in_flight): (Vec<String>, Vec<String>)) {
    let ok = wait_until(Duration::from_secs(240), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_open_files", &[]) == 0.0
            && metric(&m, "weir_outbox_files", &[]) == 0.0
            && count_rows(&weir.out_dir()).0 >= acked.len() as u64
    });
    assert!(ok, "not all delivered\n{}", weir.log());
    let rows = read_rows(&weir.out_dir());
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.record["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let stored: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        stored.len(),
        ids.len(),
        "an event stored twice\n{}",
        weir.log()
    );
    let acked_set: std::collections::BTreeSet<&str> = acked.iter().map(String::as_str).collect();
    let missing = acked_set.difference(&stored).count();
    assert_eq!(missing, 0, "acked events missing\n{}", weir.log());
    let extra: Vec<&str> = stored.difference(&acked_set).copied().collect();
    let whole_in_flight = extra.is_empty() || extra.len() == in_flight.len();
    assert!(
        whole_in_flight && extra.iter().all(|id| in_flight.iter().any(|f| f == id)),
        "stored events never sent, or only part of the request in flight: {} extra\n{}",
        extra.len(),
        weir.log()
    );
}

/// The WAL alone fills its 48 MiB disk (no other writer, the sink on another
/// file system): appends stop at `wal.disk_reserve` (backpressure, /readyz
/// says why), the roller's clock goes on, the period's file finishes and
/// leaves, released segments give the space back, and acks resume without
/// anyone touching the node. Every acked event is delivered once, and no
/// write ever failed.
#[test]
fn a_disk_the_wal_filled_heals_by_itself() {
    let mut weir = Weir::create_full(
        "request_timeout = \"10m\"\n",
        "",
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\n[wal]\nsegment_bytes = \"1MiB\"\ndisk_reserve = \"8MiB\"\n",
    );
    let data = weir.data_dir();
    let _ = std::fs::remove_dir_all(&data);
    let _tmpfs = Tmpfs::mount(&data, "48m");
    weir.spawn();
    let client = Resender::start(weir.port, "heal.x", 50, 2000);

    wait_stalled(&client, &weir, Duration::from_secs(120));
    let stalled_at = client.acked();
    let (code, body) = http_get(weir.metrics_port, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("wal.disk_reserve"), "{body}");
    assert_eq!(http_get(weir.metrics_port, "/healthz").unwrap().0, 200);
    let m = scrape(weir.metrics_port);
    assert!(metric(&m, "weir_wal_disk_reserve_waits_total", &[]) >= 1.0);
    // Appends wait once a whole group (wal.max_group_bytes, 8 MiB) would
    // go under the reserve: between 8 and 17 MiB stay free.
    let free = metric(&m, "weir_wal_disk_free_bytes", &[]);
    assert!(
        ((8 << 20) as f64..(17 << 20) as f64).contains(&free),
        "free {free}"
    );

    // Nobody frees anything: the period ends, its file leaves, acks resume.
    let resumed = wait_until(Duration::from_secs(150), || {
        client.acked() > stalled_at + 500
    });
    assert!(
        resumed,
        "acks did not resume by themselves ({} acked, stalled at {stalled_at})\n{}",
        client.acked(),
        weir.log()
    );
    let acked = client.stop();
    let m = scrape(weir.metrics_port);
    assert_eq!(
        metric(&m, "weir_wal_errors_total", &[]),
        0.0,
        "the reserve kept every write from failing\n{}",
        weir.log()
    );
    assert_delivered_once(&weir, acked);
    weir.kill9();
}

/// Someone else fills the disk (a 12 MiB file, then whatever the WAL left of
/// its reserve): acks stop, /readyz says why, /healthz stays up, weir neither
/// exits nor crash-loops (a kill -9 while full restarts cleanly, a drain
/// asked for while full ends instead of hanging); once the space is given
/// back every acked event is delivered, once.
#[test]
fn a_disk_someone_else_filled_stops_acks_and_loses_nothing() {
    let mut weir = Weir::create_full(
        "request_timeout = \"10m\"\n",
        "",
        "[roll]\nperiod = \"1m\"\ngrace = \"1s\"\n[wal]\nsegment_bytes = \"1MiB\"\ndisk_reserve = \"4MiB\"\n",
    );
    let data = weir.data_dir();
    let _ = std::fs::remove_dir_all(&data);
    let _tmpfs = Tmpfs::mount(&data, "48m");
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; 12 << 20]).unwrap();
    weir.spawn();
    let client = Resender::start(weir.port, "disk.x", 50, 2000);

    wait_stalled(&client, &weir, Duration::from_secs(120));
    // The reserve too: whatever is left goes to a second file, until the
    // file system refuses.
    let rest = data.join("filler-rest");
    {
        let mut f = std::fs::File::create(&rest).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
    }
    let (code, body) = http_get(weir.metrics_port, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("WAL"), "{body}");
    assert_eq!(http_get(weir.metrics_port, "/healthz").unwrap().0, 200);
    assert!(weir.is_running(), "{}", weir.log());

    // A crash while full: weir comes back up, still without acking.
    weir.kill9();
    weir.spawn();
    assert_eq!(http_get(weir.metrics_port, "/healthz").unwrap().0, 200);
    let stuck_at = client.acked();
    let steady = wait_until(Duration::from_secs(3), || !weir.is_running());
    assert!(!steady, "no crash loop on a full disk\n{}", weir.log());
    // A drain while still full: files cannot be finished (the WAL keeps
    // their events), but weir must stop rather than wait forever for WAL
    // records that were never written.
    let marker = data.join("drain-on-exit");
    std::fs::write(&marker, b"").unwrap();
    weir.sigterm();
    assert!(
        weir.wait_exit(Duration::from_secs(90)),
        "a drain on a full disk hung\n{}",
        weir.log()
    );
    std::fs::remove_file(&marker).unwrap();
    weir.spawn();
    // Space returns: acks resume.
    std::fs::remove_file(&rest).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_until(Duration::from_secs(120), || client.acked() > stuck_at);
    assert!(resumed, "acks did not resume\n{}", weir.log());
    let acked = client.stop();
    assert_delivered_once(&weir, acked);
    weir.kill9();
}
