//! Test harness: runs the real `weir` binary as a child process, real forward
//! clients (Node and Python libraries) and real Parquet readers (DuckDB and
//! pyarrow). `scripts/test` installs the clients and readers; run the suite
//! through it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn infra() -> PathBuf {
    repo().join("target/testinfra")
}

/// The venv Python with fluent-logger, duckdb and pyarrow.
pub fn python() -> PathBuf {
    let p = std::env::var_os("WEIR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| infra().join("venv/bin/python"));
    assert!(
        p.exists(),
        "{} missing: run the suite with scripts/test, which installs it",
        p.display()
    );
    p
}

/// node_modules holding @fluent-org/logger and fluent-logger.
pub fn node_path() -> PathBuf {
    let p = std::env::var_os("WEIR_TEST_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| infra().join("node/node_modules"));
    assert!(
        p.join("@fluent-org/logger").exists(),
        "{} missing: run the suite with scripts/test, which installs it",
        p.display()
    );
    p
}

pub fn support(file: &str) -> PathBuf {
    repo().join("tests/support").join(file)
}

/// A port no other test of this run was given and nothing listens on,
/// below Linux's ephemeral range (32768–60999): a port the kernel hands out
/// (bind to port 0) can be taken meanwhile as the source port of any
/// outgoing connection, and weir then fails to listen on it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each run starts at its own offset, so runs side by side differ too.
    let start = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n * 7) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `done` until it holds; gives up only when `progress` (a counter
/// of work done) has not moved for `stall`. For waits whose length depends
/// on how loaded the machine is (thousands of files to finish), where a
/// fixed deadline fails a slow but healthy run.
pub fn wait_while_progressing(
    stall: Duration,
    mut done: impl FnMut() -> bool,
    mut progress: impl FnMut() -> f64,
) -> bool {
    let mut last = progress();
    let mut moved = Instant::now();
    loop {
        if done() {
            return true;
        }
        let now = progress();
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > stall {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `weir serve` child process with its own data and output folders.
pub struct Weir {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub metrics_port: u16,
    child: Option<Child>,
    pub config_path: PathBuf,
    /// Extra environment for the next spawn (failpoints).
    pub env: Vec<(String, String)>,
    /// The test's deadline (watchdog.rs).
    watch: crate::watchdog::Watch,
}

impl Weir {
    /// Config with node_id n1, a 1-minute period, 1 s grace, a local sink
    /// under `out/`, metrics on `metrics_port`; `forward` lines go into
    /// `[forward]`, `extra` TOML sections are appended.
    pub fn config(
        dir: &Path,
        port: u16,
        metrics_port: u16,
        forward: &str,
        metrics: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"node_id = "n1"
data_dir = "{data}"
[forward]
listen = "127.0.0.1:{port}"
{forward}
[sinks.local]
type = "local"
path = "{out}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
{metrics}
{extra}
"#,
            data = dir.join("data").display(),
            out = dir.join("out").display(),
        )
    }

    pub fn start(extra: &str) -> Self {
        Self::start_with("", extra)
    }

    /// `extra` may hold `[roll]` keys; without them the period is 1m and
    /// the grace 1s.
    pub fn start_with(forward: &str, extra: &str) -> Self {
        Self::start_full(forward, "", extra)
    }

    /// `forward` and `metrics` lines go into those sections.
    pub fn start_full(forward: &str, metrics: &str, extra: &str) -> Self {
        Self::start_at(
            tempfile::tempdir().expect("tempdir"),
            forward,
            metrics,
            extra,
        )
    }

    /// Like [`Self::start_with`], listening for forward on `port` (a
    /// server that replaces another one at its address).
    pub fn start_on(port: u16, forward: &str, extra: &str) -> Self {
        Self::start_port(
            tempfile::tempdir().expect("tempdir"),
            port,
            forward,
            "",
            extra,
        )
    }

    fn start_at(dir: tempfile::TempDir, forward: &str, metrics: &str, extra: &str) -> Self {
        Self::start_port(dir, free_port(), forward, metrics, extra)
    }

    fn start_port(
        dir: tempfile::TempDir,
        port: u16,
        forward: &str,
        metrics: &str,
        extra: &str,
    ) -> Self {
        let metrics_port = free_port();
        let config_path = dir.path().join("weir.toml");
        let extra = if extra.contains("[roll]") {
            extra.to_string()
        } else {
            format!("[roll]\nperiod = \"1m\"\ngrace = \"1s\"\n{extra}")
        };
        std::fs::write(
            &config_path,
            Self::config(dir.path(), port, metrics_port, forward, metrics, &extra),
        )
        .unwrap();
        let watch = crate::watchdog::Watch::new(dir.path().join("weir.log"));
        let mut w = Self {
            dir,
            port,
            metrics_port,
            child: None,
            config_path,
            env: Vec::new(),
            watch,
        };
        w.spawn();
        w
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("weir.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the process and waits until it accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "-c"])
            .arg(&self.config_path)
            .env("WEIR_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weir");
        self.watch.set_pid(Some(child.id()));
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "weir did not start listening:\n{}", self.log());
    }

    /// Starts with no process, so the caller can set `env` first.
    pub fn create_full(forward: &str, metrics: &str, extra: &str) -> Self {
        let mut w = Self::start_full(forward, metrics, extra);
        w.kill9();
        w
    }

    /// Waits for the process to exit by itself (a failpoint).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let exited = wait_until(timeout, || !self.is_running());
        if exited {
            self.child = None;
            self.watch.set_pid(None);
        }
        exited
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.watch.set_pid(None);
    }

    /// Sends `signal` (`HUP`, `USR1` …) to the running process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
    }

    /// SIGTERM without waiting (see [`Self::wait_exit`]).
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    /// SIGTERM and wait for exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let status = c.wait().unwrap();
        self.watch.set_pid(None);
        status
    }

    /// Stops with a drain (the `drain-on-exit` marker): every open file is
    /// finished and delivered before exit, so a test reads its rows at once.
    pub fn drain_and_stop(&mut self) {
        std::fs::write(self.data_dir().join("drain-on-exit"), b"").unwrap();
        let status = self.terminate();
        assert!(status.success(), "drain failed: {status}\n{}", self.log());
    }

    /// Open file descriptors of the running process.
    pub fn fd_count(&self) -> usize {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the running process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory of the running process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// A KiB field of the running process's /proc status.
    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Files under `out/` (relative paths), sorted.
    pub fn output_files(&self) -> Vec<String> {
        list_files(&self.out_dir())
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The names in one folder (the outbox, a dead-letter folder).
pub fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn list_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// One row read back from Parquet.
#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    pub time_us: i64,
    pub tag: String,
    pub record: Value,
    pub columns: BTreeMap<String, Value>,
}

impl Row {
    /// One line of read_parquet.py / read_s3.py output.
    pub fn from_json_line(l: &str) -> Row {
        let mut v: BTreeMap<String, Value> = serde_json::from_str(l).unwrap();
        let file = v.remove("file").unwrap().as_str().unwrap().to_string();
        let time_us = v.remove("time_us").unwrap().as_i64().unwrap();
        let tag = v.remove("tag").unwrap().as_str().unwrap().to_string();
        let record = serde_json::from_str(v.remove("record").unwrap().as_str().unwrap()).unwrap();
        Row {
            file,
            time_us,
            tag,
            record,
            columns: v,
        }
    }
}

/// Runs `cmd` to its end and asserts it succeeded, naming the command and
/// showing its stderr otherwise; returns its output.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `weir loadgen --to TO --json ARGS`, which must succeed; its report.
pub fn loadgen(to: &str, args: &[&str]) -> Value {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["loadgen", "--to", to, "--json"])
            .args(args),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Reads every Parquet file under `root` with DuckDB (and pyarrow schema checks).
pub fn read_rows(root: &Path) -> Vec<Row> {
    let out = run_ok(
        Command::new(python())
            .arg(support("read_parquet.py"))
            .arg(root),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(Row::from_json_line)
        .collect()
}

/// The key path of a minute-period file: `{tag}/dt=…/hour=HH/minute=MM/n1.parquet`.
pub fn minute_key(tag: &str, epoch_secs: i64) -> String {
    let m = epoch_secs.div_euclid(60) * 60;
    let dt = chrono::DateTime::from_timestamp(m, 0).unwrap();
    format!(
        "{tag}/dt={}/hour={}/minute={}/n1.parquet",
        dt.format("%Y-%m-%d"),
        dt.format("%H"),
        dt.format("%M")
    )
}

// ---- a minimal raw forward client, for crash and bad-input tests ----

pub fn mp_str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).unwrap();
}

/// `[tag, [[EventTime, {"id": id, "n": n, "pad": pad}] …], {"chunk": chunk}]`
pub fn forward_request(
    tag: &str,
    events: &[(i64, String)],
    chunk: Option<&str>,
    pad: usize,
) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, if chunk.is_some() { 3 } else { 2 }).unwrap();
    mp_str(&mut b, tag);
    rmp::encode::write_array_len(&mut b, events.len() as u32).unwrap();
    for (t, id) in events {
        rmp::encode::write_array_len(&mut b, 2).unwrap();
        b.extend_from_slice(&[0xd7, 0x00]);
        b.extend_from_slice(&(*t as u32).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        rmp::encode::write_map_len(&mut b, 2).unwrap();
        mp_str(&mut b, "id");
        mp_str(&mut b, id);
        mp_str(&mut b, "pad");
        mp_str(&mut b, &"x".repeat(pad));
    }
    if let Some(c) = chunk {
        rmp::encode::write_map_len(&mut b, 1).unwrap();
        mp_str(&mut b, "chunk");
        mp_str(&mut b, c);
    }
    b
}

/// Reads one `{"ack": chunk}` reply; `Err` on close, timeout or a wrong ack.
pub fn read_ack(s: &mut TcpStream, chunk: &str) -> std::io::Result<()> {
    let mut want = vec![0x81, 0xa3, b'a', b'c', b'k'];
    mp_str(&mut want, chunk);
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)?;
    if got != want {
        return Err(std::io::Error::other(format!("wrong ack {got:02x?}")));
    }
    Ok(())
}

/// Sends a request and waits for its ack.
pub fn send_acked(s: &mut TcpStream, req: &[u8], chunk: &str) -> std::io::Result<()> {
    s.write_all(req)?;
    read_ack(s, chunk)
}

pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

// ---- HTTP and metrics ----

/// GET `path` from weir's metrics port: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// One scraped sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Scrapes `/metrics` and parses it with the Python `prometheus_client`
/// text-format parser (a real Prometheus parser, not ours).
pub fn scrape(port: u16) -> Vec<Sample> {
    let out = run_ok(
        Command::new(python())
            .arg(support("scrape.py"))
            .arg(format!("http://127.0.0.1:{port}/metrics")),
    );
    let v: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|(name, labels, value)| Sample {
            name,
            labels,
            value,
        })
        .collect()
}

/// Sum of a metric's samples whose labels include all of `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Rows, distinct ids and record bytes of the Parquet files under `root`
/// (counted by DuckDB, no rows printed).
pub fn count_rows(root: &Path) -> (u64, u64) {
    let out = run_ok(
        Command::new(python())
            .arg(support("count_parquet.py"))
            .arg(root),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["rows"].as_u64().unwrap(),
        v["distinct_ids"].as_u64().unwrap(),
    )
}
