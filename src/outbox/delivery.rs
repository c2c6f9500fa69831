//! Delivery: one worker per sink, each with its own queue, so a failing sink
//! retries on its own and never holds up another (invariant 6). What an
//! attempt's result means is [`super::verdict`]'s; this file is the loop
//! that carries it out (marks, dead letters, retries, commits, order).
//!
//! # Memory
//! Every queue holds entries for files in the outbox, never bytes: a sink's
//! queue and its retry list hold one `Arc<Manifest>` (shared by the sinks)
//! per file it has not taken yet; the outcome channel one id per delivery
//! not yet recorded; the sweeper's queue one key per delivered file not
//! yet swept. The outbox holds at most `outbox.max_backlog_bytes` of files
//! (past it the roller waits) and a file is at least a few hundred bytes,
//! so each is bounded by that limit over the smallest file (a few hundred
//! bytes of entry per file: under 1 MiB per GiB of backlog in practice).
//! `weir redeliver` adds one entry per retained file a job sends, bounded
//! by `outbox.retain_bytes` the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::levels::Levels;
use super::manifest::Slot;
use super::order::{Decision, Order};
use super::redeliver::{LiveItem, LiveJobs};
use super::verdict::{judge, Kind, Verdict};
use super::{Manifest, OutboxDir};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::sink::Sink;

/// Each file's retries: from half a second, doubling up to a minute.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

/// A sink that took a file after this long without taking any is back
/// from an outage: the files waiting on their backoff are tried at once
/// rather than up to a minute later. (A sink that keeps taking files while
/// one of them fails never counts as back, so that file keeps its backoff.)
const BACK_AFTER: Duration = Duration::from_secs(5);

/// Makes every waiting file due `now`, keeping its backoff for its next
/// failure.
fn wake_all<T>(waiting: &mut [(tokio::time::Instant, Backoff, T)], now: tokio::time::Instant) {
    for (at, _, _) in waiting.iter_mut() {
        if *at > now {
            *at = now;
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Channels the outbox reads.
pub(crate) struct DeliveryLinks {
    /// Files the roller finished.
    pub(crate) finished: mpsc::Receiver<Manifest>,
    /// Lowest WAL sequence still on disk; manifests below it can go.
    pub(crate) wal_oldest: watch::Receiver<u64>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) metrics: Metrics,
    pub(crate) backlog: Arc<super::Backlog>,
    /// Where delivered files go instead of being deleted (`outbox.retain`).
    pub(crate) retention: Option<super::Retention>,
    /// `weir redeliver` requests for this node.
    pub(crate) redeliver: LiveJobs,
    /// Object sinks (not Treasure Data): name → (key prefix, whether it
    /// takes previews). Each gets a preview sweeper: a sink that no longer
    /// takes previews still has those it took removed.
    pub(crate) object_sinks: BTreeMap<String, (String, bool)>,
    /// How long a replaced preview stays (see `previews.rs`).
    pub(crate) preview_linger: Duration,
    /// Sinks whose commits fail (for `/readyz`), and those a delivery
    /// reached (their start probe stops).
    pub(crate) sink_status: Arc<crate::status::SinkStatus>,
}

/// What a sink worker sends.
enum Work {
    /// A finished file from the outbox.
    File(Arc<Manifest>),
    /// A retained file, again (`weir redeliver`).
    Again(Arc<LiveItem>),
}

/// What a sink worker reports.
enum Outcome {
    /// The sink has the outbox file (its mark is durable).
    Delivered { id: String, sink: String },
    /// A redelivered file was sent, or given up.
    Redelivered {
        item: Arc<LiveItem>,
        result: Result<(), String>,
    },
}

struct Entry {
    manifest: Arc<Manifest>,
    pending: BTreeSet<String>,
}

/// A file every sink has: all that is kept of it (in memory) until the WAL
/// no longer holds its records and its manifest can go.
struct Delivered {
    covered_through: u64,
    sinks: Box<[String]>,
}

/// Starts delivery of `initial` (from [`OutboxDir::load`]) and of every file
/// the roller finishes from now on. Ends when `finished` closes or on shutdown.
pub(crate) fn start(
    outbox: OutboxDir,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    initial: Vec<Manifest>,
    mut links: DeliveryLinks,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
        // Set once the roller is done: committing sinks commit what they
        // staged at once instead of at their interval.
        let (closing_tx, closing_rx) = watch::channel(false);
        let mut queues = BTreeMap::new();
        let mut workers = Vec::new();
        let mut sweepers = Vec::new();
        for (name, sink) in &sinks {
            // Every sink's series exist from the start, at zero.
            links
                .metrics
                .outbox
                .sink(name, links.object_sinks.contains_key(name));
            let (tx, rx) = mpsc::unbounded_channel::<Work>();
            queues.insert(name.clone(), tx);
            let sweeper = links.object_sinks.get(name).and_then(|(prefix, fresh)| {
                let (tx, rx) = mpsc::unbounded_channel();
                workers.push(super::previews::start(
                    name.clone(),
                    sink.clone(),
                    super::previews::Roots::new(prefix),
                    links.preview_linger,
                    rx,
                    links.shutdown.clone(),
                    links.metrics.clone(),
                ));
                // Held until delivery ends; its close starts the last pass.
                sweepers.push(tx.clone());
                fresh.then_some(tx)
            });
            workers.push(tokio::spawn(worker(
                Worker {
                    sink_name: name.clone(),
                    sink: sink.clone(),
                    outbox: outbox.clone(),
                    done: done_tx.clone(),
                    shutdown: links.shutdown.clone(),
                    metrics: links.metrics.clone(),
                    sweeper,
                    status: links.sink_status.clone(),
                    closing: closing_rx.clone(),
                },
                rx,
            )));
        }
        drop(done_tx);
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut levels = Levels::new(sinks.keys());
        let enqueue = |m: Manifest, entries: &mut BTreeMap<String, Entry>, levels: &mut Levels| {
            let manifest = Arc::new(m);
            let mut pending = BTreeSet::new();
            for sink in manifest.keys.keys() {
                if outbox.is_delivered(&manifest, sink) {
                    continue;
                }
                match queues.get(sink) {
                    Some(q) => {
                        levels.waits(sink, manifest.bytes);
                        pending.insert(sink.clone());
                        let _ = q.send(Work::File(manifest.clone()));
                    }
                    None => tracing::warn!(id = manifest.id, sink, "file is waiting for a sink that is no longer configured; it stays in the outbox"),
                }
            }
            if !pending.is_empty() {
                links.backlog.add(manifest.bytes);
            }
            entries.insert(manifest.id.clone(), Entry { manifest, pending });
        };
        let mut delivered: BTreeMap<String, Delivered> = BTreeMap::new();
        for m in initial {
            enqueue(m, &mut entries, &mut levels);
        }
        // Files already everywhere need only what pruning needs. One whose
        // every sink is marked but whose data is still here (a stop or a
        // crash between the last mark and its removal) goes now, as it
        // would have then.
        // Every sink of the manifest must say so: a file whose sink is no
        // longer configured is pending nowhere, yet nobody has it.
        for e in entries.values() {
            let m = &e.manifest;
            if outbox.has_data(m) && m.keys.keys().all(|sink| outbox.is_delivered(m, sink)) {
                if let Err(err) = let_go(
                    &outbox,
                    links.retention.as_mut(),
                    &links.redeliver,
                    &e.manifest,
                ) {
                    tracing::warn!(id = e.manifest.id, error = %err, "cannot remove delivered outbox file");
                }
            }
        }
        let done_at_start: Vec<String> = entries
            .iter()
            .filter(|(_, e)| e.pending.is_empty() && !outbox.has_data(&e.manifest))
            .map(|(id, _)| id.clone())
            .collect();
        for id in done_at_start {
            if let Some(e) = entries.remove(&id) {
                delivered.insert(id, compact(&e.manifest));
            }
        }
        let mut prune_tick = tokio::time::interval(Duration::from_secs(5));
        let mut redeliver_tick = tokio::time::interval(Duration::from_secs(1));
        let mut finished_open = true;
        loop {
            levels.report(&links.metrics, &links.backlog, links.retention.as_ref());
            // Shutting down (the roller is gone) and nothing waits: done.
            if !finished_open && entries.values().all(|e| e.pending.is_empty()) {
                break;
            }
            tokio::select! {
                m = links.finished.recv(), if finished_open => match m {
                    Some(m) => enqueue(m, &mut entries, &mut levels),
                    None => {
                        finished_open = false;
                        let _ = closing_tx.send(true);
                        let waiting = entries.values().filter(|e| !e.pending.is_empty()).count();
                        if waiting > 0 {
                            tracing::info!(waiting, "delivering finished files before exit");
                        }
                    }
                },
                d = done_rx.recv() => match d {
                    Some(Outcome::Redelivered { item, result }) => {
                        links.redeliver.record(&item.job, &item.item, result);
                    }
                    Some(Outcome::Delivered { id, sink }) => {
                        if let Some(e) = entries.get_mut(&id) {
                            let was_pending = !e.pending.is_empty();
                            if e.pending.remove(&sink) {
                                levels.taken(&sink, e.manifest.bytes);
                            }
                            if was_pending && e.pending.is_empty() {
                                links.backlog.sub(e.manifest.bytes);
                            }
                            if e.pending.is_empty() && outbox.all_marked(&e.manifest) {
                                let gone = let_go(&outbox, links.retention.as_mut(), &links.redeliver, &e.manifest);
                                match gone {
                                    Ok(()) => {
                                        let c = compact(&e.manifest);
                                        entries.remove(&id);
                                        delivered.insert(id, c);
                                    }
                                    Err(err) => tracing::warn!(id, error = %err, "cannot remove delivered outbox file"),
                                }
                            }
                        }
                    }
                    None => break,
                },
                _ = prune_tick.tick() => {
                    oldest_waiting(&entries, &mut levels);
                    if let Some(r) = links.retention.as_mut() {
                        let jobs = &links.redeliver;
                        r.prune_except(now_secs(), &|id| jobs.pins(id));
                    }
                    let oldest = *links.wal_oldest.borrow();
                    delivered.retain(|id, d| {
                        if d.covered_through >= oldest {
                            return true;
                        }
                        match outbox.forget_delivered(id, &d.sinks) {
                            Ok(()) => false,
                            Err(err) => {
                                tracing::warn!(id, error = %err, "cannot prune outbox manifest");
                                true
                            }
                        }
                    });
                    entries.retain(|id, e| {
                        let prunable = e.pending.is_empty()
                            && e.manifest.covered_through < oldest
                            && !outbox.has_data(&e.manifest);
                        if prunable {
                            if let Err(err) = outbox.forget(&e.manifest) {
                                tracing::warn!(id, error = %err, "cannot prune outbox manifest");
                                return true;
                            }
                        }
                        !prunable
                    });
                }
                _ = redeliver_tick.tick() => {
                    for item in links.redeliver.take_new() {
                        let item = Arc::new(item);
                        match queues.get(&item.sink) {
                            Some(q) => {
                                let _ = q.send(Work::Again(item));
                            }
                            None => links.redeliver.record(&item.job, &item.item, Err("the sink is not running on this node".into())),
                        }
                    }
                }
                _ = links.shutdown.changed() => {
                    if *links.shutdown.borrow() { break; }
                }
            }
        }
        drop(queues);
        drop(sweepers);
        for w in workers {
            let _ = w.await;
        }
        let one_sink = delivered.iter().filter_map(|(id, d)| match &d.sinks[..] {
            [sink] => Some((id.as_str(), sink.as_str())),
            _ => None,
        });
        if let Err(e) = outbox.mark_for_older_builds(one_sink) {
            tracing::warn!(error = %e, "cannot write delivery marks for older builds");
        }
    })
}

/// A file every sink has leaves the outbox: into retention (pruned to its
/// bounds, keeping what a redelivery still sends), or deleted.
fn let_go(
    outbox: &OutboxDir,
    retention: Option<&mut super::Retention>,
    jobs: &LiveJobs,
    m: &Manifest,
) -> std::io::Result<()> {
    let preview = m.slot == super::manifest::Slot::Preview;
    match retention.filter(|_| !preview) {
        Some(r) => r.keep(outbox, m).map(|()| {
            r.prune_except(now_secs(), &|id| jobs.pins(id));
        }),
        None => outbox.remove_data(m),
    }
}

fn compact(m: &Manifest) -> Delivered {
    Delivered {
        covered_through: m.covered_through,
        sinks: m.keys.keys().cloned().collect(),
    }
}

/// Finds when each sink's oldest waiting file was finished.
fn oldest_waiting(entries: &BTreeMap<String, Entry>, levels: &mut Levels) {
    let mut oldest: BTreeMap<&str, i64> = BTreeMap::new();
    for e in entries.values() {
        for sink in &e.pending {
            let t = oldest.entry(sink).or_insert(i64::MAX);
            *t = (*t).min(e.manifest.finished_at_ms);
        }
    }
    levels.ages(|sink| oldest.get(sink).copied(), crate::wal::now_ms());
}

/// One sink's deliveries. Each file has its own backoff: a file that keeps
/// failing (a sink rejecting that one key, a name the destination refuses)
/// waits for its retry while the files behind it go. Redelivered files go
/// the same way, but are given up at their deadline and never dead-lettered.
async fn worker(w: Worker, mut queue: mpsc::UnboundedReceiver<Work>) {
    let Worker {
        sink_name,
        sink,
        outbox,
        done,
        mut shutdown,
        metrics,
        sweeper,
        status,
        mut closing,
    } = w;
    let mut commits = Commits::new(sink.commits());
    // "delivered" lines, bounded by `log.lines_per_minute` (per sink).
    let mut delivered_lines =
        crate::logging::Activity::new("delivered", metrics.suppressed.clone()).scoped(&sink_name);
    let mut ready: std::collections::VecDeque<(Work, Backoff)> = Default::default();
    // Files waiting to be retried: (when, their backoff, file).
    let mut waiting: Vec<(tokio::time::Instant, Backoff, Work)> = Vec::new();
    // The sink's last successful upload: one after a while without any
    // means it is back, and the files waiting on their backoff go now.
    let mut last_ok = tokio::time::Instant::now();
    // A sink with previews takes files in the order order.rs explains.
    let mut order: Option<Order> = sweeper.is_some().then(Order::default);
    let admit = |w: Work,
                 ready: &mut std::collections::VecDeque<(Work, Backoff)>,
                 order: &mut Option<Order>| {
        if let (Some(o), Work::File(m)) = (order.as_mut(), &w) {
            o.admit(m);
        }
        ready.push_back((w, RETRY));
    };
    let mut open = true;
    loop {
        delivered_lines.tick();
        while let Ok(w) = queue.try_recv() {
            admit(w, &mut ready, &mut order);
        }
        // A committing sink: commit what waits when it is due, and before
        // the worker ends with nothing else to do.
        let idle_end = (!open || *closing.borrow()) && ready.is_empty() && waiting.is_empty();
        if commits.due(idle_end) {
            tokio::select! {
                () = commits.run(&sink, &sink_name, &outbox, &metrics, &done, &status) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            continue;
        }
        commits.report(&sink_name, &metrics);
        let now = tokio::time::Instant::now();
        let due = waiting
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, _, _))| *at)
            .map(|(i, _)| i);
        let (work, mut backoff) = match (due, ready.pop_front()) {
            (Some(i), next) => {
                if let Some(n) = next {
                    ready.push_front(n);
                }
                let (_, b, w) = waiting.swap_remove(i);
                (w, b)
            }
            (None, Some(next)) => next,
            (None, None) => {
                if !open && waiting.is_empty() && commits.is_empty() {
                    return;
                }
                let wake = waiting
                    .iter()
                    .map(|(at, _, _)| *at)
                    .chain(commits.wake())
                    .min();
                tokio::select! {
                    w = queue.recv(), if open => match w {
                        Some(w) => admit(w, &mut ready, &mut order),
                        None => open = false,
                    },
                    _ = sleep_until_or_forever(wake) => {}
                    _ = closing.wait_for(|c| *c), if !*closing.borrow() => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        let decision = match (&order, &work) {
            (Some(o), Work::File(m)) => o.decide(m),
            _ => Decision::Upload,
        };
        if decision == Decision::Wait {
            waiting.push((
                tokio::time::Instant::now() + Duration::from_millis(200),
                backoff,
                work,
            ));
            continue;
        }
        let (key, path) = match &work {
            Work::File(m) => match m.keys.get(&sink_name) {
                Some(key) => (key.clone(), outbox.data_path(m)),
                None => continue,
            },
            Work::Again(item) => (item.item.key.clone(), item.item.path.clone()),
        };
        if decision == Decision::Skip {
            if let Work::File(m) = &work {
                tracing::debug!(
                    sink = sink_name,
                    key,
                    "preview replaced by its finished file; not uploaded"
                );
                if finish_delivery(&outbox, m, &sink_name, &metrics, &done).is_err() {
                    waiting.push((
                        tokio::time::Instant::now() + backoff.next_delay(),
                        backoff,
                        work,
                    ));
                    continue;
                }
                if let Some(o) = order.as_mut() {
                    o.done(m, true);
                }
            }
            continue;
        }
        let started = Instant::now();
        let result = tokio::select! {
            r = sink.put(&key, &path) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        metrics
            .outbox
            .attempted(&sink_name, &result, started.elapsed());
        if result.is_ok() {
            status.reached(&sink_name);
            let now = tokio::time::Instant::now();
            if now.duration_since(last_ok) >= BACK_AFTER {
                wake_all(&mut waiting, now);
            }
            last_ok = now;
        }
        let kind = match &work {
            Work::File(_) => Kind::File,
            Work::Again(item) => Kind::Again {
                give_up_at: item.give_up_at,
            },
        };
        let now = tokio::time::Instant::now();
        let verdict = judge(&result, kind, commits.enabled(), now);
        let m = match (verdict, work) {
            (Verdict::Stage, work) => {
                // Delivered once committed (commits.run marks it then).
                commits.stage(work, key, path);
                continue;
            }
            (Verdict::Retry, Work::Again(item)) => {
                // The last attempt is made at the deadline.
                let retry_at = (now + backoff.next_delay()).min(item.give_up_at);
                if let Err(e) = &result {
                    metrics.outbox.upload_failed(
                        "redeliver upload",
                        &sink_name,
                        &key,
                        e,
                        retry_at - now,
                    );
                }
                waiting.push((retry_at, backoff, Work::Again(item)));
                continue;
            }
            (_, Work::Again(item)) => {
                let result = result.map_err(|e| e.to_string());
                metrics.outbox.redelivered(&sink_name, &key, &result);
                let _ = done.send(Outcome::Redelivered { item, result });
                continue;
            }
            (_, Work::File(m)) => m,
        };
        let retry_later = |waiting: &mut Vec<_>, mut backoff: Backoff| {
            waiting.push((
                tokio::time::Instant::now() + backoff.next_delay(),
                backoff,
                Work::File(m.clone()),
            ));
        };
        if let (Some(o), Verdict::Delivered | Verdict::DeadLetter) = (order.as_mut(), verdict) {
            o.done(&m, verdict == Verdict::Delivered);
        }
        match (verdict, result) {
            (Verdict::Delivered, _) => {
                if let (Some(tx), false) = (&sweeper, m.slot == Slot::Preview) {
                    let _ = tx.send(key.clone());
                }
            }
            (Verdict::DeadLetter, Err(e)) => {
                match outbox.dead_letter(&m, &sink_name, &e.to_string()) {
                    Ok(at) => metrics.outbox.dead_lettered(&sink_name, &key, &e, &at),
                    Err(io) => {
                        metrics.outbox.bookkeeping_failed(
                            "dead_letter",
                            &format_args!("{sink_name}: {key}"),
                            &io,
                        );
                        retry_later(&mut waiting, backoff);
                        continue;
                    }
                }
            }
            (_, result) => {
                if let Err(e) = result {
                    metrics
                        .outbox
                        .upload_failed("upload", &sink_name, &key, &e, backoff.peek());
                }
                retry_later(&mut waiting, backoff);
                continue;
            }
        }
        crate::failpoint::hit("outbox.after_upload");
        if finish_delivery(&outbox, &m, &sink_name, &metrics, &done).is_err() {
            retry_later(&mut waiting, backoff);
            continue;
        }
        if delivered_lines.admit(m.rows, m.bytes) {
            tracing::info!(
                sink = sink_name,
                key,
                rows = m.rows,
                bytes = m.bytes,
                "delivered"
            );
        }
    }
}

/// Records that `sink` has the file: the durable mark first (it must be on
/// disk before the file may be removed), then metrics and the outcome.
fn finish_delivery(
    outbox: &OutboxDir,
    m: &Manifest,
    sink: &str,
    metrics: &Metrics,
    done: &mpsc::UnboundedSender<Outcome>,
) -> std::io::Result<()> {
    if let Err(e) = outbox.mark_delivered(m, sink) {
        metrics
            .outbox
            .bookkeeping_failed("mark_delivered", &format_args!("{sink}: {}", m.id), &e);
        return Err(e);
    }
    let _ = done.send(Outcome::Delivered {
        id: m.id.clone(),
        sink: sink.to_string(),
    });
    Ok(())
}

/// What one sink's worker works with.
struct Worker {
    sink_name: String,
    sink: Arc<dyn Sink>,
    outbox: OutboxDir,
    done: mpsc::UnboundedSender<Outcome>,
    shutdown: watch::Receiver<bool>,
    metrics: Metrics,
    /// The sink's preview sweeper, when it takes previews.
    sweeper: Option<mpsc::UnboundedSender<String>>,
    /// Where failing commits are reported for `/readyz`.
    status: Arc<crate::status::SinkStatus>,
    /// True once no more files will come (weir stops or drains).
    closing: watch::Receiver<bool>,
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_or_forever(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A committing sink's files put but not yet visible: committed together
/// every `interval` (or at `max_files`), marked delivered only then.
///
/// # Memory
/// One entry per staged file (its key and manifest), at most what the
/// outbox holds for the sink (`outbox.max_backlog_bytes` bounds that).
struct Commits {
    policy: Option<crate::sink::CommitPolicy>,
    staged: Vec<(Work, crate::sink::Staged)>,
    /// When the next commit is due (the first file staged plus the
    /// interval, or a failed commit's retry).
    at: Option<tokio::time::Instant>,
    backoff: Backoff,
}

impl Commits {
    fn new(policy: Option<crate::sink::CommitPolicy>) -> Self {
        Self {
            policy,
            staged: Vec::new(),
            at: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    fn wake(&self) -> Option<tokio::time::Instant> {
        self.at.filter(|_| !self.staged.is_empty())
    }

    fn stage(&mut self, work: Work, key: String, path: std::path::PathBuf) {
        let Some(policy) = self.policy else { return };
        let manifest = match &work {
            Work::File(m) => m.clone(),
            Work::Again(item) => Arc::new(item.item.manifest.clone()),
        };
        self.staged.push((
            work,
            crate::sink::Staged {
                key,
                path,
                manifest,
            },
        ));
        self.at
            .get_or_insert_with(|| tokio::time::Instant::now() + policy.interval);
    }

    /// Whether to commit now: due, full, or the worker is ending.
    fn due(&self, ending: bool) -> bool {
        let Some(policy) = self.policy else {
            return false;
        };
        if self.staged.is_empty() {
            return false;
        }
        let retrying = self.backoff.peek() > Duration::from_secs(1);
        let due = self.at.is_some_and(|t| t <= tokio::time::Instant::now());
        due || (!retrying && self.staged.len() >= policy.max_files) || (ending && !retrying)
    }

    /// Files waiting for their commit, and the age of the oldest.
    fn report(&self, sink: &str, metrics: &Metrics) {
        if !self.enabled() {
            return;
        }
        let oldest = self
            .staged
            .iter()
            .map(|(_, s)| s.manifest.finished_at_ms)
            .min();
        let age = oldest.map_or(0, |t| (crate::wal::now_ms() - t).max(0) / 1000);
        metrics.iceberg.waiting(sink, self.staged.len(), age);
    }

    /// Commits what is staged; marks what the sink reports visible, keeps
    /// the rest for a retry with backoff.
    async fn run(
        &mut self,
        sink: &Arc<dyn Sink>,
        sink_name: &str,
        outbox: &OutboxDir,
        metrics: &Metrics,
        done: &mpsc::UnboundedSender<Outcome>,
        status: &crate::status::SinkStatus,
    ) {
        let redelivered = self.staged.iter().any(|(w, _)| matches!(w, Work::Again(_)));
        let files: Vec<crate::sink::Staged> = self.staged.iter().map(|(_, s)| s.clone()).collect();
        let committed = sink.commit(&files, redelivered).await;
        let visible: BTreeSet<String> = committed.done.into_iter().collect();
        let mut kept = Vec::new();
        for (work, staged) in std::mem::take(&mut self.staged) {
            if !visible.contains(&staged.key) {
                kept.push((work, staged));
                continue;
            }
            match work {
                Work::File(m) => {
                    // The mark is retried until it is on disk; the commit
                    // is not repeated meanwhile.
                    while finish_delivery(outbox, &m, sink_name, metrics, done).is_err() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    tracing::debug!(sink = sink_name, key = staged.key, "committed");
                }
                Work::Again(item) => {
                    metrics.outbox.redelivered(sink_name, &staged.key, &Ok(()));
                    let _ = done.send(Outcome::Redelivered {
                        item,
                        result: Ok(()),
                    });
                }
            }
        }
        self.staged = kept;
        match committed.failed {
            Some(e) => {
                if e.is_auth() {
                    metrics.outbox.auth_refused(sink_name);
                }
                let delay = self.backoff.next_delay();
                metrics
                    .iceberg
                    .commit_failed(sink_name, self.staged.len(), &e, delay);
                status.failing(sink_name, e.to_string());
                metrics.outbox.sink_failing(sink_name, &e);
                self.at = Some(tokio::time::Instant::now() + delay);
            }
            None => {
                status.ok(sink_name);
                status.reached(sink_name);
                metrics.outbox.sink_ok(sink_name, "commit");
                self.backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
                self.at = self
                    .policy
                    .filter(|_| !self.staged.is_empty())
                    .map(|p| tokio::time::Instant::now() + p.interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_back_from_an_outage_gets_its_waiting_files_at_once() {
        let now = tokio::time::Instant::now();
        let mut waiting = vec![
            (now + Duration::from_secs(50), RETRY, 1),
            (now - Duration::from_secs(1), RETRY, 2),
        ];
        wake_all(&mut waiting, now);
        assert!(waiting.iter().all(|(at, _, _)| *at <= now));
        assert_eq!(
            waiting[1].0,
            now - Duration::from_secs(1),
            "an earlier due time stays"
        );
    }

    /// A sink that takes everything.
    struct Takes;

    impl Sink for Takes {
        fn put<'a>(
            &'a self,
            _key: &'a str,
            _path: &'a std::path::Path,
        ) -> crate::sink::SinkFuture<'a> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_file_every_sink_has_that_is_still_here_at_start_leaves_the_outbox() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("outbox");
        let outbox = OutboxDir::open(dir.clone()).unwrap();
        let mut m = Manifest::for_test(&format!("{:020}-{:016x}", 7, 9), 0);
        m.keys = [("a", "k/a"), ("b", "k/b")]
            .into_iter()
            .map(|(s, k)| (s.to_string(), k.to_string()))
            .collect();
        let file = d.path().join("x.parquet");
        std::fs::write(&file, b"PAR1").unwrap();
        outbox.commit(&file, &m).unwrap();
        // Both sinks marked; a stop came before the file was removed.
        outbox.mark_delivered(&m, "a").unwrap();
        outbox.mark_delivered(&m, "b").unwrap();
        let config = Arc::new(
            crate::config::Config::from_str(&format!("data_dir = {:?}", d.path()), "t").unwrap(),
        );
        let metrics = Metrics::new();
        let (finished_tx, finished) = mpsc::channel(1);
        drop(finished_tx);
        let (_oldest, wal_oldest) = watch::channel(0);
        let (_stop, shutdown) = watch::channel(false);
        let links = DeliveryLinks {
            finished,
            wal_oldest,
            shutdown,
            metrics: metrics.clone(),
            backlog: super::super::Backlog::new(u64::MAX, metrics.clone()),
            retention: None,
            redeliver: LiveJobs::new(config),
            object_sinks: BTreeMap::new(),
            preview_linger: Duration::from_secs(1),
            sink_status: crate::status::SinkStatus::new(),
        };
        let sinks: BTreeMap<String, Arc<dyn Sink>> = [("a", Takes), ("b", Takes)]
            .into_iter()
            .map(|(n, s)| (n.to_string(), Arc::new(s) as Arc<dyn Sink>))
            .collect();
        // A one-sink file for a sink no longer configured: nobody has it.
        let mut kept = Manifest::for_test(&format!("{:020}-{:016x}", 8, 9), 0);
        kept.keys = [("gone".to_string(), "k/g".to_string())].into();
        let other = d.path().join("y.parquet");
        std::fs::write(&other, b"PAR1").unwrap();
        outbox.commit(&other, &kept).unwrap();
        let initial = outbox.load(&metrics).unwrap();
        assert_eq!(initial.len(), 2);
        tokio::time::timeout(
            Duration::from_secs(10),
            start(outbox, sinks, initial, links),
        )
        .await
        .expect("delivery ends once nothing waits")
        .unwrap();
        assert!(
            !dir.join(m.data_name()).exists(),
            "the delivered file is still in the outbox"
        );
        assert!(
            dir.join(kept.data_name()).exists(),
            "a file its sink never took stays"
        );
    }
}
