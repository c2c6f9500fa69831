//! The users' own agents as clients: a real Fluent Bit (out_forward) and a
//! real Fluentd (out_forward) send numbered events in every mode they have
//! (Fluent Bit's default Forward mode with v1.5 metadata entries, gzip,
//! acks, TLS, shared key with users; Fluentd's PackedForward with str32
//! entries and "\n"-terminated chunk ids, gzip, acks, TLS, shared key), and
//! every event must be in the Parquet files exactly once.
//!
//! The binaries are found through `FLUENT_BIT` / `FLUENTD`, then `PATH`,
//! then `$PEERS_HOME/bin` (default `~/peers/bin`). `scripts/test` names the
//! agents it did not find in `WEIR_TEST_NO_PEERS` and reports them loudly in
//! its summary; run outside it, a missing agent fails the test with how to
//! get it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::tls::{make_certs, tls_toml};

/// Events per client run.
pub const N: u64 = 3000;

/// An agent's binary, or None if scripts/test already reported it missing.
pub fn agent(env: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| {
            let home = std::env::var_os("PEERS_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("peers")))?;
            Some(home.join("bin").join(name)).filter(|p| p.is_file())
        });
    if found.is_none() {
        let reported = std::env::var("WEIR_TEST_NO_PEERS").unwrap_or_default();
        if reported.split_whitespace().any(|n| n == name) {
            eprintln!("INTEROP NOT RUN: {name} not found (see the scripts/test summary)");
            return None;
        }
        panic!(
            "{name} not found: set {env}=/path/to/{name}, put it on PATH, or install the \
             peers (../shared/peers/install.sh puts them in ~/peers/bin); scripts/test \
             reports a missing agent instead of failing"
        );
    }
    found
}

/// Waits until weir has accepted `n` events in all, with the agents' logs
/// in the failure message.
fn await_accepted(weir: &Weir, n: u64, logs: &[&Path]) {
    await_metric(weir, "weir_forward_events_total", n, logs);
}

/// Waits until the counter `name` reaches `n`, with the agents' logs in the
/// failure message.
pub fn await_metric(weir: &Weir, name: &str, n: u64, logs: &[&Path]) {
    let ok = wait_until(Duration::from_secs(180), || {
        metric(&scrape(weir.metrics_port), name, &[]) >= n as f64
    });
    let tails: Vec<String> = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        ok,
        "weir did not accept {n} events\nweir:\n{}\nagents:\n{}",
        weir.log(),
        tails.join("\n----\n")
    );
}

/// Every tag holds exactly events 1..=N, once each.
fn assert_every_event_once(weir: &Weir, tags: &[&str]) {
    let ok = wait_until(Duration::from_secs(150), || {
        let m = scrape(weir.metrics_port);
        metric(&m, "weir_roll_rows_total", &[]) >= (N * tags.len() as u64) as f64
            && metric(&m, "weir_roll_open_files", &[]) == 0.0
            && metric(&m, "weir_outbox_files", &[]) == 0.0
    });
    assert!(ok, "files not finished\n{}", weir.log());
    assert_rows_once(&read_rows(&weir.out_dir()), tags);
}

/// In `rows`, every tag of `tags` holds exactly events 1..=N, once each,
/// and no other tag is there.
pub fn assert_rows_once(rows: &[Row], tags: &[&str]) {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in rows {
        let seq = r.record["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq in {:?}", r.record));
        assert!(
            r.record["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("hello")),
            "{:?}",
            r.record
        );
        seen.entry(r.tag.clone()).or_default().push(seq);
    }
    for tag in tags {
        let mut got = seen.remove(*tag).unwrap_or_default();
        got.sort_unstable();
        let want: Vec<u64> = (1..=N).collect();
        assert!(
            got == want,
            "{tag}: {} rows, {} distinct, expected 1..={N}",
            got.len(),
            {
                let mut d = got.clone();
                d.dedup();
                d.len()
            }
        );
    }
    assert!(seen.is_empty(), "unexpected tags {:?}", seen.keys());
}

/// Stops an agent and every process it started (Fluentd's supervisor has a
/// worker): SIGTERM to its process group, then SIGKILL to what is left.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

impl Drop for Fluentd {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// A weir on TLS (certificates from the test CA) with the shared key
/// `s3cret` and the user alice/pw; the certificates' folder.
fn weir_with_tls_and_users() -> (Weir, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let security = "[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"s3cret\"\nuser_auth = true\nusers = [{ username = \"alice\", password = \"pw\" }]\n";
    let weir = Weir::start(&format!("{}{security}", tls_toml(certs.path(), false)));
    (weir, certs)
}

/// No error, retry or failed flush in an agent's log.
fn assert_clean_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            let warned = l.contains("warn]") || l.contains("[error]");
            warned
                && ["retry", "flush", "ack", "error", "broken", "unavailable"]
                    .iter()
                    .any(|w| l.contains(w))
        })
        .collect();
    assert!(bad.is_empty(), "{}:\n{}", log.display(), bad.join("\n"));
}

/// Failed shared-key handshakes (not failed TLS handshakes: the harness's
/// readiness probe is a plain connect to the TLS port).
fn shared_key_failures(m: &[Sample]) -> f64 {
    m.iter()
        .filter(|s| s.name == "weir_forward_handshake_failures_total")
        .filter(|s| s.labels.get("reason").map(String::as_str) != Some("tls"))
        .map(|s| s.value)
        .sum()
}

fn events_jsonl(dir: &Path, agent: &str) -> PathBuf {
    let path = dir.join(format!("{agent}-events.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 1..=N {
        writeln!(f, "{{\"seq\":{i},\"message\":\"hello from {agent} {i}\"}}").unwrap();
    }
    f.flush().unwrap();
    path
}

/// A running Fluent Bit reading numbered events on stdin (kept open so it
/// keeps running until stopped) and forwarding them with `output` settings.
pub struct FluentBit {
    child: Child,
    pub log: PathBuf,
}

impl FluentBit {
    fn start(bin: &Path, dir: &Path, name: &str, port: u16, output: &str) -> Self {
        Self::start_output(
            bin,
            dir,
            name,
            &format!(
                "[OUTPUT]\n    name forward\n    match *\n    host 127.0.0.1\n    port {port}\n    retry_limit no_limits\n{output}"
            ),
        )
    }

    /// Fluent Bit with its `[OUTPUT]` section as given.
    pub fn start_output(bin: &Path, dir: &Path, name: &str, output_section: &str) -> Self {
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "[SERVICE]\n    flush 0.5\n    grace 5\n    log_level info\n\n\
                 [INPUT]\n    name stdin\n    tag {name}\n\n{output_section}"
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let events = std::fs::read(events_jsonl(dir, name)).unwrap();
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(&events)
            .expect("feed fluent-bit");
        Self { child, log }
    }

    /// Stops the agent; its log must show no retried or failed flush (a
    /// lost or wrong ack makes the agent resend, which the WAL would hide).
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        stop_group(&mut self.child);
        assert_clean_log(&self.log);
    }
}

/// Runs Fluentd reading the numbered events once (in_exec) and forwarding
/// them with out_forward `settings` (inside `<match>`).
pub struct Fluentd {
    child: Child,
    pub log: PathBuf,
}

impl Fluentd {
    fn start(bin: &Path, dir: &Path, name: &str, settings: &str) -> Self {
        Self::start_output(
            bin,
            dir,
            name,
            &format!("  @type forward\n  heartbeat_type none\n  recover_wait 1s\n{settings}"),
        )
    }

    /// Fluentd with `output` inside its `<match>` (before the buffer).
    pub fn start_output(bin: &Path, dir: &Path, name: &str, output: &str) -> Self {
        let events = events_jsonl(dir, name);
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "<system>\n  log_level info\n  workers 1\n</system>\n\
                 <label @FLUENT_LOG>\n  <match **>\n    @type null\n  </match>\n</label>\n\
                 <source>\n  @type exec\n  tag {name}\n  command cat {events}\n  <parse>\n    @type json\n  </parse>\n</source>\n\
                 <match {name}>\n{output}\n\
                 <buffer>\n    @type memory\n    flush_mode interval\n    flush_interval 1s\n    retry_wait 1s\n    chunk_limit_records 700\n  </buffer>\n</match>\n",
                events = events.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .process_group(0)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Self { child, log }
    }

    /// Stops the agent; its log must show no retried or failed flush.
    pub fn stop(mut self) {
        stop_group(&mut self.child);
        assert_clean_log(&self.log);
    }
}

#[test]
fn fluent_bit_forward_gzip_and_acks_land_every_event_once() {
    let Some(bin) = agent("FLUENT_BIT", "fluent-bit") else {
        return;
    };
    let weir = Weir::start("");
    let dir = tempfile::tempdir().unwrap();
    // Forward mode with Fluent Bit's default [[time, metadata], record]
    // entries; with acks (the "chunk" option); gzip (CompressedPackedForward,
    // bin entries, "fluent_signal" option) with acks.
    let clients = [
        ("fb.plain", ""),
        ("fb.ack", "    require_ack_response true\n"),
        (
            "fb.gzip",
            "    compress gzip\n    require_ack_response true\n",
        ),
    ];
    let running: Vec<FluentBit> = clients
        .iter()
        .map(|(tag, out)| FluentBit::start(&bin, dir.path(), tag, weir.port, out))
        .collect();
    let logs: Vec<&Path> = running.iter().map(|f| f.log.as_path()).collect();
    await_accepted(&weir, N * 3, &logs);
    for f in running {
        f.stop();
    }
    assert_every_event_once(&weir, &["fb.plain", "fb.ack", "fb.gzip"]);
    let m = scrape(weir.metrics_port);
    for mode in ["forward", "compressed_packed_forward"] {
        assert!(
            metric(&m, "weir_forward_requests_total", &[("mode", mode)]) > 0.0,
            "no {mode} request seen"
        );
    }
}

#[test]
fn fluent_bit_over_tls_with_shared_key_and_users() {
    let Some(bin) = agent("FLUENT_BIT", "fluent-bit") else {
        return;
    };
    let (weir, certs) = weir_with_tls_and_users();
    let dir = tempfile::tempdir().unwrap();
    let out = format!(
        "    tls on\n    tls.verify on\n    tls.ca_file {}\n    tls.vhost localhost\n    shared_key s3cret\n    self_hostname fb-client\n    username alice\n    password pw\n    compress gzip\n    require_ack_response true\n",
        certs.path().join("ca.pem").display()
    );
    let fb = FluentBit::start(&bin, dir.path(), "fb.tls", weir.port, &out);
    await_accepted(&weir, N, &[&fb.log]);
    fb.stop();
    assert_every_event_once(&weir, &["fb.tls"]);
    let m = scrape(weir.metrics_port);
    assert_eq!(
        shared_key_failures(&m),
        0.0,
        "the agent authenticated every time\n{}",
        weir.log()
    );
}

#[test]
fn fluentd_packed_forward_gzip_and_acks_land_every_event_once() {
    let Some(bin) = agent("FLUENTD", "fluentd") else {
        return;
    };
    let weir = Weir::start("");
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "  <server>\n    host 127.0.0.1\n    port {}\n  </server>\n",
        weir.port
    );
    let clients = [
        ("fd.plain", server.clone()),
        ("fd.ack", format!("  require_ack_response true\n{server}")),
        (
            "fd.gzip",
            format!("  compress gzip\n  require_ack_response true\n{server}"),
        ),
    ];
    let running: Vec<Fluentd> = clients
        .iter()
        .map(|(tag, s)| Fluentd::start(&bin, dir.path(), tag, s))
        .collect();
    let logs: Vec<&Path> = running.iter().map(|f| f.log.as_path()).collect();
    await_accepted(&weir, N * 3, &logs);
    for f in running {
        f.stop();
    }
    assert_every_event_once(&weir, &["fd.plain", "fd.ack", "fd.gzip"]);
    let m = scrape(weir.metrics_port);
    for mode in ["packed_forward", "compressed_packed_forward"] {
        assert!(
            metric(&m, "weir_forward_requests_total", &[("mode", mode)]) > 0.0,
            "no {mode} request seen"
        );
    }
}

#[test]
fn fluentd_over_tls_with_shared_key_and_users() {
    let Some(bin) = agent("FLUENTD", "fluentd") else {
        return;
    };
    let (weir, certs) = weir_with_tls_and_users();
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "  transport tls\n  tls_cert_path {ca}\n  tls_verify_hostname false\n  compress gzip\n  require_ack_response true\n\
         <security>\n    self_hostname fd-client\n    shared_key s3cret\n  </security>\n\
         <server>\n    host 127.0.0.1\n    port {port}\n    username alice\n    password pw\n  </server>\n",
        ca = certs.path().join("ca.pem").display(),
        port = weir.port
    );
    let fd = Fluentd::start(&bin, dir.path(), "fd.tls", &settings);
    await_accepted(&weir, N, &[&fd.log]);
    fd.stop();
    assert_every_event_once(&weir, &["fd.tls"]);
    let m = scrape(weir.metrics_port);
    assert_eq!(
        shared_key_failures(&m),
        0.0,
        "the agent authenticated every time\n{}",
        weir.log()
    );
}
