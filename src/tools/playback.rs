//! `weir replay`: sends captured requests to any forward server, keeping
//! each connection's order and (unless `--max`) the captured timing scaled
//! by `--speed`, and measures ack latency where the original asked for acks.
//!
//! One dispatcher reads the capture files in order and hands each record
//! to its lane (an original connection, or one of `--connections` lanes);
//! each lane is a task with one forward connection that waits until the
//! record's time, sends, and reads the ack.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::options::{self, ClientOptions};
use super::report::{Report, Totals};
use super::rewrite::{prepare, Changes};
use crate::capture::{Kind, Reader};
use crate::client::{self, Stream};
use crate::msgpack::FrameBuffer;

/// Records queued per lane ahead of their send time (bounds read-ahead
/// memory: lanes × this × request size).
const LANE_QUEUE: usize = 64;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Capture files, replayed one after another in the order given.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Forward server, HOST:PORT (e.g. 127.0.0.1:24224, weir.logging.svc:24224).
    #[arg(long)]
    pub to: String,
    /// Replay this many times faster than captured (0.5: half speed).
    #[arg(long, default_value_t = 1.0, conflicts_with = "max")]
    pub(crate) speed: f64,
    /// Ignore captured timing: send as fast as acks allow.
    #[arg(long)]
    pub(crate) max: bool,
    /// Spread the captured connections over this many connections (0: one
    /// connection per captured connection, opened and closed as captured).
    /// A captured connection always maps to one lane, so its order holds.
    #[arg(long, default_value_t = 0)]
    pub(crate) connections: usize,
    /// Start over at the end of the files (until --duration or Ctrl-C).
    #[arg(long = "loop")]
    pub(crate) repeat: bool,
    /// Stop after this long ("10m").
    #[arg(long)]
    pub(crate) duration: Option<humantime::Duration>,
    /// Replace each tag; `{tag}` stands for the captured tag ("replay.{tag}").
    #[arg(long)]
    pub(crate) retag: Option<String>,
    /// Move every event time by the same amount so the first captured
    /// request lands at the moment the replay (or each loop) starts; the
    /// spacing between events is kept as captured. Whole milliseconds.
    #[arg(long)]
    pub(crate) shift_time: bool,
    /// Give up on an ack after this long (the request counts as failed).
    #[arg(long, default_value = "60s")]
    pub(crate) ack_timeout: humantime::Duration,
    #[command(flatten)]
    pub(crate) client: ClientOptions,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One record on its way to a lane.
struct Job {
    kind: Kind,
    payload: Bytes,
    /// When to send; `None` with `--max`.
    due: Option<tokio::time::Instant>,
    shift_ns: i64,
}

/// What every lane shares.
struct Shared {
    args: ReplayArgs,
    totals: Arc<Totals>,
    latencies: Mutex<Histogram<u64>>,
    chunk_ids: AtomicU64,
    run_id: u64,
    deadline: Option<Instant>,
    /// Set on Ctrl-C/SIGTERM: lanes drop what is queued instead of sending it.
    stopped: std::sync::atomic::AtomicBool,
    /// One lane per captured connection: follow its opens and closes.
    follow_connections: bool,
}

impl Shared {
    /// Past `--duration`, or told to stop.
    fn is_over(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() > d)
    }
}

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Replays the files and returns the report; stops early when `stop`
/// resolves.
pub async fn run(
    args: ReplayArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.speed.is_finite() && args.speed > 0.0,
        "--speed: expected a number above 0, got {}",
        args.speed
    );
    // Refuse unreadable files before sending anything.
    for f in &args.files {
        Reader::open(f)?;
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        totals: Arc::new(Totals::default()),
        latencies: Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        chunk_ids: AtomicU64::new(0),
        run_id: rand::random(),
        deadline: args.duration.map(|d| started + Duration::from(d)),
        stopped: std::sync::atomic::AtomicBool::new(false),
        follow_connections: args.connections == 0,
        args,
    });
    let progress = super::report::spawn_progress(shared.totals.clone(), started, shared.args.json);
    let mut lanes: HashMap<u64, mpsc::Sender<Job>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut damage = Vec::new();
    tokio::pin!(stop);
    let dispatched = tokio::select! {
        r = dispatch(&shared, &mut lanes, &mut tasks, &mut damage) => r,
        _ = &mut stop => {
            shared.stopped.store(true, Ordering::Relaxed);
            Ok(())
        }
    };
    drop(lanes);
    if shared.stopped.load(Ordering::Relaxed) {
        // Lanes may be sleeping until a record's time: do not wait for them.
        tasks.abort_all();
    }
    while tasks.join_next().await.is_some() {}
    progress.abort();
    dispatched?;
    let h = shared
        .latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("latency lock"))?
        .clone();
    let mut report = Report::new(&shared.totals, started.elapsed(), &h);
    report.capture_damage = damage;
    Ok(report)
}

/// Reads the files (again and again with `--loop`) and hands records to lanes.
async fn dispatch(
    shared: &Arc<Shared>,
    lanes: &mut HashMap<u64, mpsc::Sender<Job>>,
    tasks: &mut JoinSet<()>,
    damage: &mut Vec<String>,
) -> anyhow::Result<()> {
    let args = &shared.args;
    let mut pass = 0u64;
    let mut pass_start = tokio::time::Instant::now();
    loop {
        // A later pass may be scheduled ahead of now: its wall clock too.
        let ahead = pass_start.saturating_duration_since(tokio::time::Instant::now());
        let pass_start_unix_ns = unix_ns() + ahead.as_nanos() as i64;
        let mut first_us: Option<u64> = None;
        let mut last_due = pass_start;
        let mut sent_any = false;
        for path in &args.files {
            let mut reader = Reader::open(path)?;
            let started_us = reader.header.started_unix_us;
            for rec in reader.by_ref() {
                let at_us = started_us.saturating_add(rec.offset_us);
                let first = *first_us.get_or_insert(at_us);
                let since_first = Duration::from_micros(at_us.saturating_sub(first));
                let due = (!args.max).then(|| pass_start + since_first.div_f64(args.speed));
                if let Some(due) = due {
                    last_due = due;
                    if shared.deadline.is_some_and(|d| due.into_std() > d) {
                        return Ok(());
                    }
                }
                if shared.is_over() {
                    return Ok(());
                }
                let shift_ns = if args.shift_time {
                    let ns = pass_start_unix_ns - (first as i64) * 1000;
                    ns - ns.rem_euclid(1_000_000)
                } else {
                    0
                };
                let lane = if shared.follow_connections {
                    rec.conn
                } else {
                    if rec.kind != Kind::Request {
                        continue;
                    }
                    rec.conn % args.connections as u64
                };
                let tx = lanes.entry(lane).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(LANE_QUEUE);
                    let shared = shared.clone();
                    tasks.spawn(async move { run_lane(rx, &shared).await });
                    tx
                });
                sent_any |= rec.kind == Kind::Request;
                let closed = rec.kind == Kind::Close;
                let _ = tx
                    .send(Job {
                        kind: rec.kind,
                        payload: rec.payload,
                        due,
                        shift_ns,
                    })
                    .await;
                if closed {
                    // The lane ends once it has sent what it holds: a capture
                    // of many short connections does not pile up idle tasks.
                    lanes.remove(&lane);
                }
            }
            if let Some(d) = reader.damage() {
                let msg = format!("{}: {d}; replayed the records before it", path.display());
                if pass == 0 {
                    eprintln!("weir replay: damaged capture: {msg}");
                    damage.push(msg);
                }
            }
        }
        if !args.repeat || !sent_any {
            return Ok(());
        }
        // The next pass starts when this one's last request is due.
        pass_start = last_due.max(tokio::time::Instant::now());
        pass += 1;
    }
}

/// One connection's worth of records, in order.
async fn run_lane(mut rx: mpsc::Receiver<Job>, shared: &Shared) {
    let t = &shared.totals;
    let mut stream: Option<Stream> = None;
    let mut replies = FrameBuffer::new();
    while let Some(job) = rx.recv().await {
        match job.kind {
            Kind::Open => continue,
            Kind::Close => {
                if let Some(mut s) = stream.take() {
                    let _ = s.shutdown().await;
                }
                continue;
            }
            Kind::Request => {}
        }
        if let Some(due) = job.due {
            tokio::time::sleep_until(due).await;
        }
        if shared.is_over() {
            continue;
        }
        let changes = Changes {
            retag: shared.args.retag.clone(),
            shift_ns: job.shift_ns,
        };
        let p = prepare(&job.payload, &changes, |_| {
            format!(
                "{:016x}{:016x}",
                shared.run_id,
                shared.chunk_ids.fetch_add(1, Ordering::Relaxed)
            )
        });
        if stream.is_none() {
            match options::connect(&shared.args.to, &shared.args.client).await {
                Ok(s) => {
                    replies = FrameBuffer::new();
                    stream = Some(s);
                }
                Err(e) => {
                    t.failed_connections.fetch_add(1, Ordering::Relaxed);
                    t.failed_requests.fetch_add(1, Ordering::Relaxed);
                    if t.failed_connections.load(Ordering::Relaxed) <= 3 {
                        eprintln!("weir replay: {e:#}");
                    }
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let sent_at = Instant::now();
        if let Err(e) = s.write_all(&p.bytes).await {
            fail(t, &format!("sending: {e}"));
            stream = None;
            continue;
        }
        t.requests.fetch_add(1, Ordering::Relaxed);
        t.events.fetch_add(p.events, Ordering::Relaxed);
        t.bytes.fetch_add(p.bytes.len() as u64, Ordering::Relaxed);
        let Some(chunk) = p.chunk else { continue };
        t.pending.fetch_add(1, Ordering::Relaxed);
        let timeout = Duration::from(shared.args.ack_timeout);
        let got = tokio::time::timeout(timeout, client::read_ack(s, &mut replies)).await;
        t.pending.fetch_sub(1, Ordering::Relaxed);
        match got {
            Ok(Ok(ack)) if ack == chunk.as_bytes() => {
                t.acked_events.fetch_add(p.events, Ordering::Relaxed);
                let us = sent_at.elapsed().as_micros() as u64;
                if let Ok(mut h) = shared.latencies.lock() {
                    let _ = h.record(us.max(1));
                }
            }
            Ok(Ok(other)) => {
                fail(
                    t,
                    &format!(
                        "ack for chunk {:?} while waiting for {chunk:?}",
                        String::from_utf8_lossy(&other)
                    ),
                );
                stream = None;
            }
            Ok(Err(e)) => {
                fail(t, &format!("{e:#}"));
                stream = None;
            }
            Err(_) => {
                fail(t, "no ack within --ack-timeout");
                stream = None;
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = s.shutdown().await;
    }
}

fn fail(t: &Totals, why: &str) {
    let n = t.failed_requests.fetch_add(1, Ordering::Relaxed);
    if n < 3 {
        eprintln!("weir replay: request failed: {why}");
    }
}
