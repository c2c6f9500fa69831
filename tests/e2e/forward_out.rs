//! Forward output (`type = "forward"`): weir → weir, weir → Fluentd, weir →
//! Fluent Bit, each counted at the receiver. Every event the sending weir
//! acked reaches a weir receiver exactly once through kill -9 of either
//! side (chunk ids come from WAL positions, so resends are recognised), a
//! Fluentd receiver at least once; one of two servers down for a minute
//! sends everything to the other and is used again when it returns; a
//! server that never acks holds no memory, and other sinks flow while its
//! chunks wait within the outbox's backlog bound.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use crate::common::*;
use crate::peers::agent;
use crate::tls::{make_certs, tls_toml};

const EVENTS_PER_REQUEST: usize = 25;

/// A sending weir whose routes send everything to `[sinks.fwd]` with
/// `servers` and the extra sink keys `sink`.
fn sender(servers: &[u16], sink: &str, extra: &str) -> Weir {
    let list: Vec<String> = servers
        .iter()
        .map(|p| format!("{{ address = \"127.0.0.1:{p}\" }}"))
        .collect();
    Weir::start(&format!(
        "[sinks.fwd]\ntype = \"forward\"\nservers = [{}]\nflush_interval = \"200ms\"\nself_hostname = \"weir-sender\"\n{sink}\n\
         [[route]]\nmatch = \"ok.**\"\nsinks = [\"local\"]\n[[route]]\nmatch = \"**\"\nsinks = [\"fwd\"]\n{extra}",
        list.join(", ")
    ))
}

/// Sends numbered requests to `port` until `stop`, each resent (same chunk
/// id, after reconnecting) until acked, as Fluentd does; acked ids go to
/// `acked`.
fn client(k: usize, port: u16, tag: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut conn = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<(i64, String)> = (0..EVENTS_PER_REQUEST)
            .map(|e| (now_secs(), format!("{tag}-c{k}-{n}-{e}")))
            .collect();
        let chunk = format!("{tag}-c{k}-r{n}");
        // Five tags a client: a part holds many, one message each.
        let req = forward_request(&format!("{tag}.{}", n % 5), &ids, Some(&chunk), 60);
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
            match send_acked(s, &req, &chunk) {
                Ok(()) => break,
                Err(_) => conn = None,
            }
        }
        acked
            .lock()
            .unwrap()
            .extend(ids.into_iter().map(|(_, id)| id));
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Acked requests of `n` events under `tag` (one connection); their ids.
fn send_batch(port: u16, tag: &str, requests: usize, label: &str) -> Vec<String> {
    send_tags(port, &[tag], requests, label)
}

/// Like [`send_batch`], the requests taking `tags` in turn (so parts hold
/// several tags).
fn send_tags(port: u16, tags: &[&str], requests: usize, label: &str) -> Vec<String> {
    let mut s = connect(port).unwrap();
    let mut all = Vec::new();
    for r in 0..requests {
        let tag = tags[r % tags.len()];
        let ids: Vec<(i64, String)> = (0..EVENTS_PER_REQUEST)
            .map(|e| (now_secs(), format!("{label}-{r}-{e}")))
            .collect();
        let chunk = format!("{label}-{r}");
        send_acked(
            &mut s,
            &forward_request(tag, &ids, Some(&chunk), 60),
            &chunk,
        )
        .unwrap();
        all.extend(ids.into_iter().map(|(_, id)| id));
    }
    all
}

/// Whether the sender has finished and delivered everything: nothing open
/// in the roller, no part waiting in the outbox, and servers acked at
/// least the events clients sent it since its start (so a roller that has
/// not read its WAL yet does not pass for done).
fn sender_drained(w: &Weir) -> bool {
    let data = w.data_dir();
    let open = std::fs::read_dir(data.join("roll/open"))
        .map(|d| d.count())
        .unwrap_or(1);
    let waiting = std::fs::read_dir(data.join("outbox"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".fwd"))
                .count()
        })
        .unwrap_or(1);
    if open != 0 || waiting != 0 {
        return false;
    }
    forwarded_all(w)
}

/// Servers acked at least the events clients sent the sender since its
/// start (every route of the sender forwards).
fn forwarded_all(w: &Weir) -> bool {
    let m = scrape(w.metrics_port);
    let sum = |name: &str| -> f64 {
        m.iter()
            .filter(|s| s.name.trim_end_matches("_total") == name)
            .map(|s| s.value)
            .sum()
    };
    sum("weir_forward_out_events") >= sum("weir_forward_events")
}

/// No part left in the sender and `events` acked by its servers (the
/// sender's other routes go to other sinks).
fn parts_drained(w: &Weir, events: usize) -> bool {
    let forwarded: f64 = scrape(w.metrics_port)
        .iter()
        .filter(|s| s.name.trim_end_matches("_total") == "weir_forward_out_events")
        .map(|s| s.value)
        .sum();
    let open = std::fs::read_dir(w.data_dir().join("roll/open"))
        .map(|d| d.count())
        .unwrap_or(1);
    open == 0 && forwarded >= events as f64
}

/// Events a receiving weir stored (its counter, not the sender's view: a
/// sender with nothing waiting may not have read its WAL yet).
fn received(r: &Weir) -> f64 {
    scrape(r.metrics_port)
        .iter()
        .filter(|s| s.name.starts_with("weir_forward_events"))
        .map(|s| s.value)
        .sum()
}

/// How often each id is in the rows.
fn id_counts(rows: &[Row]) -> BTreeMap<String, u32> {
    let mut count = BTreeMap::new();
    for r in rows {
        if let Some(id) = r.record["id"].as_str() {
            *count.entry(id.to_string()).or_default() += 1;
        }
    }
    count
}

/// Every id of `acked` exactly once in `count` and nothing else.
fn assert_exactly_once(acked: &[String], count: &BTreeMap<String, u32>, what: &str) {
    let missing: Vec<&String> = acked.iter().filter(|id| !count.contains_key(*id)).collect();
    let twice: Vec<(&String, &u32)> = count.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acked events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "{what}: stored twice, e.g. {twice:?}");
    assert_eq!(count.len(), acked.len(), "{what}: rows nobody sent");
}

#[test]
fn weir_to_weir_every_acked_event_once_through_kill_9_of_either_side() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let security = "[forward.security]\nself_hostname = \"weir-receiver\"\nshared_key = \"s3cret\"\nuser_auth = true\nusers = [{ username = \"alice\", password = \"pw\" }]\n";
    let mut receiver = Weir::start(&format!("{}{security}", tls_toml(certs.path(), true)));
    let d = certs.path();
    let mut sender = sender(
        &[receiver.port],
        &format!(
            "compress = \"gzip\"\ntag_prefix = \"dc1.\"\nshared_key = \"s3cret\"\nusername = \"alice\"\npassword = \"pw\"\n\
             tls_ca_path = \"{}\"\ntls_cert_path = \"{}\"\ntls_key_path = \"{}\"\n",
            d.join("ca.pem").display(),
            d.join("client.pem").display(),
            d.join("client.key").display()
        ),
        "[wal]\nsegment_bytes = \"256KiB\"\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..3)
        .map(|k| {
            let (stop, acked, port) = (stop.clone(), acked.clone(), sender.port);
            std::thread::spawn(move || client(k, port, format!("fw.t{}", k % 2), stop, acked))
        })
        .collect();
    let mut rng = rand::rng();
    let count = || acked.lock().unwrap().len();
    let kills = 8;
    for i in 0..kills {
        let before = count();
        let progressed = wait_until(Duration::from_secs(60), || count() > before + 200);
        assert!(progressed, "no acks after a restart\n{}", sender.log());
        std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
        if i % 2 == 0 {
            sender.kill9();
            sender.spawn();
        } else {
            receiver.kill9();
            receiver.spawn();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let mut acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 2000, "too little traffic: {}", acked.len());
    let drained = wait_until(Duration::from_secs(180), || sender_drained(&sender));
    assert!(
        drained,
        "sender did not deliver every chunk\n{}",
        sender.log()
    );

    // On purpose, a crash after the receiver acked a chunk and before the
    // sender recorded it: the chunk goes again with the same id, and the
    // receiver stores it once.
    let resent_before = metric(
        &scrape(receiver.metrics_port),
        "weir_forward_duplicate_chunks_total",
        &[],
    );
    sender.kill9();
    sender.env = vec![("WEIR_FAILPOINTS".into(), "outbox.after_upload".into())];
    sender.spawn();
    acked.extend(send_batch(sender.port, "fw.t0", 1, "crash-after-ack"));
    assert!(
        sender.wait_exit(Duration::from_secs(60)),
        "failpoint not reached\n{}",
        sender.log()
    );
    sender.env.clear();
    sender.spawn();
    let drained = wait_until(Duration::from_secs(60), || sender_drained(&sender));
    assert!(drained, "{}", sender.log());
    let m = scrape(sender.metrics_port);
    let server = format!("127.0.0.1:{}", receiver.port);
    let sent = metric(
        &m,
        "weir_forward_out_events_total",
        &[("sink", "fwd"), ("server", &server)],
    );
    let resent = metric(
        &scrape(receiver.metrics_port),
        "weir_forward_duplicate_chunks_total",
        &[],
    ) - resent_before;
    assert!(resent >= 1.0, "the chunk sent again was recognised");
    receiver.drain_and_stop();
    let rows = read_rows(&receiver.out_dir());
    assert!(
        rows.iter().all(|r| r.tag.starts_with("dc1.fw.t")),
        "tag_prefix on every event"
    );
    let count = id_counts(&rows);
    println!(
        "forward out: {kills} kills (half each side), {} acked, {} rows at the receiver, \
         {sent} events acked by it since the sender's last start, {resent} chunk sent again after the crash recognised",
        acked.len(),
        rows.len()
    );
    assert_exactly_once(&acked, &count, "weir → weir");
}

/// `[tag, [[EventTime(t, nanos), {"id": …}] …], {"chunk": …}]`.
fn request_with_nanos(tag: &str, ids: &[String], t: i64, nanos: u32, chunk: &str) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    mp_str(&mut b, tag);
    rmp::encode::write_array_len(&mut b, ids.len() as u32).unwrap();
    for id in ids {
        rmp::encode::write_array_len(&mut b, 2).unwrap();
        b.extend_from_slice(&[0xd7, 0x00]);
        b.extend_from_slice(&(t as u32).to_be_bytes());
        b.extend_from_slice(&nanos.to_be_bytes());
        rmp::encode::write_map_len(&mut b, 1).unwrap();
        mp_str(&mut b, "id");
        mp_str(&mut b, id);
    }
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    mp_str(&mut b, "chunk");
    mp_str(&mut b, chunk);
    b
}

fn acked_chunks(w: &Weir, server: u16) -> f64 {
    metric(
        &scrape(w.metrics_port),
        "weir_forward_out_chunks_total",
        &[
            ("sink", "fwd"),
            ("server", &format!("127.0.0.1:{server}")),
            ("result", "acked"),
        ],
    )
}

#[test]
fn one_of_two_servers_down_for_a_minute_the_other_takes_all_then_both_again() {
    let mut a = Weir::start("");
    let mut b = Weir::start("");
    let sender = sender(&[a.port, b.port], "", "");
    let t = now_secs();
    let mut sent = Vec::new();
    // Before: both servers take chunks (one per request: 200 ms apart).
    let mut s = connect(sender.port).unwrap();
    let mut request = |label: &str, r: usize, sent: &mut Vec<String>| {
        let ids: Vec<String> = (0..5).map(|e| format!("{label}-{r}-{e}")).collect();
        let chunk = format!("{label}-{r}");
        send_acked(
            &mut s,
            &request_with_nanos("fo.app", &ids, t, 123_456_789, &chunk),
            &chunk,
        )
        .unwrap();
        sent.extend(ids);
    };
    let mut r = 0;
    let both = wait_until(Duration::from_secs(60), || {
        request("before", r, &mut sent);
        r += 1;
        std::thread::sleep(Duration::from_millis(250));
        acked_chunks(&sender, a.port) >= 2.0 && acked_chunks(&sender, b.port) >= 2.0
    });
    assert!(both, "both servers should take chunks\n{}", sender.log());

    a.kill9();
    let b_before = acked_chunks(&sender, b.port);
    let a_before = acked_chunks(&sender, a.port);
    let down_since = std::time::Instant::now();
    let mut r = 0;
    while down_since.elapsed() < Duration::from_secs(60) {
        request("during", r, &mut sent);
        r += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let during = sent.iter().filter(|i| i.starts_with("during")).count();
    let delivered = wait_until(Duration::from_secs(30), || sender_drained(&sender));
    assert!(
        delivered,
        "chunks left while one server is down\n{}",
        sender.log()
    );
    assert_eq!(
        acked_chunks(&sender, a.port),
        a_before,
        "the dead server acked nothing"
    );
    assert!(
        acked_chunks(&sender, b.port) - b_before >= (r / 2) as f64,
        "the other server took the chunks"
    );
    let m = scrape(sender.metrics_port);
    let a_label = format!("127.0.0.1:{}", a.port);
    assert_eq!(
        metric(
            &m,
            "weir_forward_out_server_up",
            &[("sink", "fwd"), ("server", &a_label)]
        ),
        0.0,
        "a down server is reported down"
    );

    a.spawn();
    let mut r = 0;
    let back = wait_until(Duration::from_secs(60), || {
        request("after", r, &mut sent);
        r += 1;
        std::thread::sleep(Duration::from_millis(250));
        acked_chunks(&sender, a.port) > a_before
    });
    assert!(back, "the returned server is used again\n{}", sender.log());
    let delivered = wait_until(Duration::from_secs(60), || sender_drained(&sender));
    assert!(delivered, "{}", sender.log());
    a.drain_and_stop();
    b.drain_and_stop();
    let mut rows = read_rows(&a.out_dir());
    rows.extend(read_rows(&b.out_dir()));
    assert!(
        rows.iter()
            .all(|r| r.time_us.rem_euclid(1_000_000) == 123_456),
        "event times keep their sub-second part"
    );
    println!(
        "failover: {} events, {during} while a server was down for 60 s, {} rows at the two servers",
        sent.len(),
        rows.len()
    );
    assert_exactly_once(&sent, &id_counts(&rows), "failover");
}

/// A forward server that reads everything and never acks; counts bytes.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (st, rx) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            while !st.load(Ordering::Relaxed) {
                if let Ok((c, _)) = listener.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push(c);
                }
                for c in &mut conns {
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        rx.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            port,
            stop,
            received,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_server_that_never_acks_holds_no_memory_and_other_sinks_flow_within_the_backlog_bound() {
    let silent = Silent::start();
    let port = silent.port;
    let sender = sender(
        &[port],
        "ack_timeout = \"2s\"\nmax_chunk_bytes = \"64KiB\"\n",
        "",
    );
    let slow = send_batch(sender.port, "slow.app", 400, "slow");
    let ok = send_batch(sender.port, "ok.app", 400, "ok");
    // The local sink gets every event of its route while the forward
    // server swallows chunks without acking.
    let local = wait_until(Duration::from_secs(150), || {
        let m = scrape(sender.metrics_port);
        metric(&m, "weir_outbox_files", &[("sink", "local")]) == 0.0
            && metric(&m, "weir_roll_files_finished_total", &[("kind", "period")]) >= 1.0
    });
    assert!(local, "the local sink stalled\n{}", sender.log());
    let m = scrape(sender.metrics_port);
    let failed = metric(
        &m,
        "weir_forward_out_chunks_total",
        &[
            ("sink", "fwd"),
            ("server", &format!("127.0.0.1:{port}")),
            ("result", "failed"),
        ],
    );
    let waiting = metric(&m, "weir_outbox_files", &[("sink", "fwd")]);
    let backlog = metric(&m, "weir_outbox_backlog_bytes", &[]);
    let rss = sender.rss_kib();
    let (status, _) = http_get(sender.metrics_port, "/readyz").unwrap();
    println!(
        "never-acking server: {} bytes swallowed, {failed} chunks timed out, {waiting} chunks waiting ({backlog} B), sender RSS {rss} KiB",
        silent.received.load(Ordering::Relaxed)
    );
    assert!(failed >= 1.0, "ack timeouts counted");
    assert!(waiting >= 1.0, "chunks wait in the outbox");
    assert!(rss < 200 * 1024, "memory bounded: {rss} KiB");
    assert_eq!(
        status, 200,
        "a downstream outage does not make weir unready"
    );
    let local_rows = read_rows(&sender.out_dir());
    assert_exactly_once(&ok, &id_counts(&local_rows), "the other sink");

    // A real server comes up at the address: every chunk arrives once.
    silent.stop();
    let mut receiver = Weir::start_on(port, "", "");
    let delivered = wait_until(Duration::from_secs(120), || {
        parts_drained(&sender, slow.len())
    });
    assert!(delivered, "{}", sender.log());
    receiver.drain_and_stop();
    assert_exactly_once(
        &slow,
        &id_counts(&read_rows(&receiver.out_dir())),
        "after the outage",
    );
}

/// A Fluentd forward server on `port` writing JSON lines under `out`, with
/// TLS (the test CA's server certificate) and a shared key.
fn fluentd_server(bin: &Path, dir: &Path, port: u16, certs: &Path) -> Child {
    let out = dir.join("fluentd-out");
    let conf = dir.join("fluentd-server.conf");
    std::fs::write(
        &conf,
        format!(
            "<system>\n  log_level info\n  workers 1\n</system>\n\
             <label @FLUENT_LOG>\n  <match **>\n    @type null\n  </match>\n</label>\n\
             <source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n\
             <transport tls>\n    cert_path {cert}\n    private_key_path {key}\n  </transport>\n\
             <security>\n    self_hostname fluentd-receiver\n    shared_key s3cret\n  </security>\n</source>\n\
             <match **>\n  @type file\n  path {out}/${{tag}}\n  append true\n  <format>\n    @type json\n  </format>\n\
             <buffer tag>\n    @type memory\n    flush_mode interval\n    flush_interval 1s\n    flush_at_shutdown true\n  </buffer>\n</match>\n",
            cert = certs.join("server.pem").display(),
            key = certs.join("server.key").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .process_group(0)
        .stdout(std::fs::File::create(dir.join("fluentd-server.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()))
}

/// Ids in the JSON lines of every file under `dir`.
fn ids_in_lines(dir: &Path) -> BTreeMap<String, u32> {
    let mut count = BTreeMap::new();
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for f in files {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if let Some(id) = v["id"].as_str() {
                *count.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    count
}

fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let _ = child.wait();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
}

#[test]
fn weir_to_fluentd_over_tls_with_shared_key_at_least_once_through_kill_9() {
    let Some(bin) = agent("FLUENTD", "fluentd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let port = free_port();
    let mut fluentd = fluentd_server(&bin, dir.path(), port, &certs);
    let mut sender = sender(
        &[port],
        &format!(
            "shared_key = \"s3cret\"\ntls_ca_path = \"{}\"\ncompress = \"gzip\"\n",
            certs.join("ca.pem").display()
        ),
        "",
    );
    // Two tags: a part holds both, sent as two messages back to back.
    let mut acked = send_tags(sender.port, &["fd.app", "fd.api"], 200, "fd-a");
    sender.kill9();
    sender.spawn();
    acked.extend(send_tags(sender.port, &["fd.app", "fd.api"], 200, "fd-b"));
    let out = dir.path().join("fluentd-out");
    let arrived = wait_until(Duration::from_secs(120), || {
        let c = ids_in_lines(&out);
        acked.iter().all(|id| c.contains_key(id))
    });
    let m = scrape(sender.metrics_port);
    stop_group(&mut fluentd);
    let count = ids_in_lines(&out);
    let missing = acked.iter().filter(|id| !count.contains_key(*id)).count();
    let extra: u32 = count.values().map(|c| c - 1).sum();
    println!(
        "weir → Fluentd (TLS, shared key, gzip): {} acked, {missing} missing, {extra} delivered twice (at least once)",
        acked.len()
    );
    assert!(
        arrived,
        "{missing} events missing at Fluentd\n{}\n{}",
        sender.log(),
        std::fs::read_to_string(dir.path().join("fluentd-server.log")).unwrap_or_default()
    );
    assert!(
        metric(
            &m,
            "weir_forward_out_chunks_total",
            &[
                ("sink", "fwd"),
                ("server", &format!("127.0.0.1:{port}")),
                ("result", "acked")
            ]
        ) >= 1.0,
        "chunks acked by Fluentd"
    );
}

#[test]
fn weir_to_fluent_bit_every_event_arrives() {
    let Some(bin) = agent("FLUENT_BIT", "fluent-bit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("fb-out");
    std::fs::create_dir_all(&out).unwrap();
    let conf = dir.path().join("fb.conf");
    std::fs::write(
        &conf,
        format!(
            "[SERVICE]\n    flush 0.5\n    log_level info\n\n\
             [INPUT]\n    name forward\n    listen 127.0.0.1\n    port {port}\n\n\
             [OUTPUT]\n    name file\n    match *\n    path {}\n    format plain\n",
            out.display()
        ),
    )
    .unwrap();
    let mut fb = Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .process_group(0)
        .stdout(std::fs::File::create(dir.path().join("fb.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "fluent-bit did not listen");
    let sender = sender(&[port], "compress = \"gzip\"\n", "");
    let acked = send_tags(sender.port, &["fb.app", "fb.api", "fb.db"], 200, "fb");
    let arrived = wait_until(Duration::from_secs(60), || {
        let c = ids_in_lines(&out);
        acked.iter().all(|id| c.contains_key(id))
    });
    stop_group(&mut fb);
    let count = ids_in_lines(&out);
    assert!(
        arrived,
        "{} of {} events missing at Fluent Bit\n{}",
        acked.iter().filter(|id| !count.contains_key(*id)).count(),
        acked.len(),
        sender.log()
    );
    assert_eq!(
        count.values().map(|c| c - 1).sum::<u32>(),
        0,
        "no resends without a crash"
    );
}

/// A sender whose data_dir was lost starts a new WAL at sequence 0 under
/// the same node_id: its chunks must not look like the old WAL's resends
/// to the receiver (which would ack and drop them).
#[test]
fn a_sender_with_a_new_data_dir_is_not_taken_for_its_old_self() {
    let mut receiver = Weir::start("");
    let mut sender = sender(&[receiver.port], "", "");
    let mut acked = send_batch(sender.port, "nd.app", 8, "before");
    let delivered = wait_until(Duration::from_secs(60), || {
        received(&receiver) >= acked.len() as f64 && sender_drained(&sender)
    });
    assert!(delivered, "{}", sender.log());
    sender.kill9();
    std::fs::remove_dir_all(sender.data_dir()).unwrap();
    sender.spawn();
    acked.extend(send_batch(sender.port, "nd.app", 8, "after"));
    let delivered = wait_until(Duration::from_secs(60), || {
        received(&receiver) >= acked.len() as f64 && sender_drained(&sender)
    });
    assert!(delivered, "{}", sender.log());
    let resent = metric(
        &scrape(receiver.metrics_port),
        "weir_forward_duplicate_chunks_total",
        &[],
    );
    receiver.drain_and_stop();
    assert_eq!(resent, 0.0, "the new WAL's chunks were taken for resends");
    assert_exactly_once(
        &acked,
        &id_counts(&read_rows(&receiver.out_dir())),
        "new data_dir",
    );
}

/// A sender restored from a snapshot of its data_dir replays WAL positions
/// it used before: its new parts must not be taken for the old ones.
#[test]
fn a_sender_restored_from_a_snapshot_is_not_taken_for_its_old_self() {
    let mut receiver = Weir::start("");
    let mut sender = sender(&[receiver.port], "", "");
    let mut acked = send_batch(sender.port, "snap.app", 2, "first");
    assert!(wait_until(Duration::from_secs(60), || received(&receiver)
        >= acked.len() as f64
        && sender_drained(&sender)));
    sender.kill9();
    let snapshot = sender.dir.path().join("snapshot");
    copy_dir(&sender.data_dir(), &snapshot);
    sender.spawn();
    acked.extend(send_tags(
        sender.port,
        &["snap.app", "snap.api"],
        8,
        "lost-with-the-restore",
    ));
    assert!(wait_until(Duration::from_secs(60), || received(&receiver)
        >= acked.len() as f64
        && sender_drained(&sender)));
    sender.kill9();
    std::fs::remove_dir_all(sender.data_dir()).unwrap();
    copy_dir(&snapshot, &sender.data_dir());
    sender.spawn();
    acked.extend(send_tags(
        sender.port,
        &["snap.app", "snap.api"],
        8,
        "after",
    ));
    assert!(wait_until(Duration::from_secs(60), || received(&receiver)
        >= acked.len() as f64
        && sender_drained(&sender)));
    receiver.drain_and_stop();
    assert_exactly_once(
        &acked,
        &id_counts(&read_rows(&receiver.out_dir())),
        "snapshot",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A TCP proxy to `upstream` that, once, closes both sides after passing
/// `acks` acks back: a server dropping a connection in the middle of a
/// part.
fn closing_proxy(upstream: u16, acks: usize) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed = Arc::new(AtomicBool::new(false));
    let done = closed.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Both);
            });
            let done = done.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let (mut s_in, mut c_out) = (server, client);
                let mut buf = [0u8; 4096];
                let mut seen = 0;
                loop {
                    let n = match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    seen += buf[..n].windows(4).filter(|w| w == b"\xa3ack").count();
                    if seen >= acks && !done.swap(true, Ordering::Relaxed) {
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        let _ = s_in.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    (port, closed)
}

/// Two receivers; the connection to the first is dropped after three acks
/// of a many-tag part: the rest of the part goes to the same receiver on a
/// new connection, and no event is stored by both.
#[test]
fn a_connection_dropped_midway_through_a_part_stores_nothing_twice() {
    let mut a = Weir::start("");
    let mut b = Weir::start("");
    let (proxy, closed) = closing_proxy(a.port, 3);
    // Parts go to the proxy first when it ranks first for them: send until
    // the drop happened.
    let sender = sender(&[proxy, b.port], "", "");
    let tags: Vec<String> = (0..12).map(|i| format!("mid.t{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut acked = Vec::new();
    let mut round = 0;
    let dropped = wait_until(Duration::from_secs(60), || {
        acked.extend(send_tags(sender.port, &tags, 24, &format!("r{round}")));
        round += 1;
        std::thread::sleep(Duration::from_millis(300));
        closed.load(Ordering::Relaxed)
    });
    assert!(dropped, "no part went through the proxy\n{}", sender.log());
    acked.extend(send_tags(sender.port, &tags, 24, "last"));
    assert!(
        wait_until(Duration::from_secs(60), || sender_drained(&sender)),
        "{}",
        sender.log()
    );
    a.drain_and_stop();
    b.drain_and_stop();
    let mut rows = read_rows(&a.out_dir());
    rows.extend(read_rows(&b.out_dir()));
    assert_exactly_once(&acked, &id_counts(&rows), "dropped midway");
}
