//! Restore: `weir redeliver` sends retained files (`data_dir/retained/`,
//! kept by `outbox.retain`) again to one sink, for a period range and a
//! pattern.
//!
//! Keys are the ones the file had (its manifest holds each sink's key), so
//! running it twice leaves the same objects, and a Treasure Data part keeps
//! its unique id. A sink the file never had (a sink added later: backfill)
//! gets the key the node would give it today, from the route's current
//! prefixes.
//!
//! On a stopped node the command takes the data_dir lock and uploads itself
//! ([`run_offline`]). On a live node it cannot take the lock; it leaves a
//! request in `data_dir/redeliver/` and the node's delivery loop sends the
//! files through its sink workers, with their retries and metrics
//! ([`LiveJobs`]), writing progress to `{id}.status.json` for the command to
//! print.
//!
//! # Memory
//! One manifest per selected file (a few hundred bytes each).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::{FileKind, Manifest};
use crate::backoff::Backoff;
use crate::config::{Config, SinkConfig};
use crate::router::TagPattern;
use crate::sink::key::{sink_key, FileName, KeyParts};
use crate::sink::{Sink, SinkError};

/// Longest `--timeout` (a week): a node never plans retries further ahead.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

/// Folder under data_dir where a live node picks up requests.
pub const REQUEST_DIR: &str = "redeliver";
/// Folder under data_dir holding retained files.
pub const RETAINED_DIR: &str = "retained";

/// What to send again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// Sink name, as configured.
    pub sink: String,
    /// Periods starting at or after this (Unix seconds, UTC).
    pub from: i64,
    /// Periods starting before this.
    pub to: i64,
    /// Tag pattern (router syntax) the file's group must match: the tag, a
    /// per-route file's route name, or a Treasure Data part's `db.table`.
    pub pattern: String,
    /// How long a file's upload is retried before it counts as failed.
    pub timeout_secs: u64,
}

/// Why a redelivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("--sink {sink:?}: no such sink (configured: {known})")]
    UnknownSink { sink: String, known: String },
    #[error("--match {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("--from ({from}) must be before --to ({to}; default: now)")]
    EmptyRange { from: String, to: String },
    #[error("data_dir {0} does not exist: no node ran with this config, so nothing is retained")]
    NoDataDir(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the node stopped before finishing the redelivery; run the command again (it is idempotent)")]
    NodeStopped,
    #[error(transparent)]
    Sink(#[from] anyhow::Error),
}

/// Parses `2026-11-20T00`, `2026-11-20T00:30`, `2026-11-20T00:30:00[Z]`, an
/// RFC 3339 time or a date `2026-11-20` (UTC unless an offset is given).
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let trimmed = s.trim_end_matches('Z');
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(trimmed, fmt) {
            return Ok(t.and_utc().timestamp());
        }
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&format!("{trimmed}:00"), "%Y-%m-%dT%H:%M")
    {
        return Ok(t.and_utc().timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp());
    }
    Err(format!(
        "{s:?}: expected a UTC time like 2026-11-20T00 (hour), 2026-11-20T00:30, 2026-11-20 or RFC 3339"
    ))
}

/// One file to send.
#[derive(Debug, Clone)]
pub struct Item {
    pub manifest: Manifest,
    pub key: String,
    pub path: PathBuf,
}

/// The files a request selects.
#[derive(Debug, Default)]
pub struct Selection {
    pub items: Vec<Item>,
    /// Files in range the sink cannot take (a Parquet file for a Treasure
    /// Data sink, a part made for another Treasure Data sink, a route that
    /// no longer sends to the sink).
    pub not_applicable: usize,
    /// Manifests in range whose data file is gone (they count as failed).
    pub missing: Vec<String>,
}

/// Reads the retained manifests and picks those `req` names.
pub fn select(
    config: &Config,
    data_dir: &Path,
    req: &Request,
) -> Result<Selection, RedeliverError> {
    let Some(sink_cfg) = config.sinks.get(&req.sink) else {
        return Err(RedeliverError::UnknownSink {
            sink: req.sink.clone(),
            known: config.sinks.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    if req.from >= req.to {
        let utc = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0).map_or_else(
                || t.to_string(),
                |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
        };
        return Err(RedeliverError::EmptyRange {
            from: utc(req.from),
            to: utc(req.to),
        });
    }
    // Space-separated alternatives, as in a route's `match`.
    let patterns =
        TagPattern::parse_list(&req.pattern).map_err(|message| RedeliverError::Pattern {
            pattern: req.pattern.clone(),
            message,
        })?;
    let dir = data_dir.join(RETAINED_DIR);
    let io = |source| RedeliverError::Io {
        path: dir.clone(),
        source,
    };
    let mut selection = Selection::default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(selection),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let m = match std::fs::read(&path).map(|b| Manifest::from_json(&b)) {
            Ok(Ok(m)) => m,
            _ => {
                tracing::warn!(file = %path.display(), "unreadable retained manifest; skipped");
                continue;
            }
        };
        // A Treasure Data part has no period: it is chosen by when it was made.
        let at = m.starts_at();
        let group =
            super::manifest::unhex(&m.group_hex).unwrap_or_else(|| m.group.clone().into_bytes());
        if at < req.from || at >= req.to || !patterns.iter().any(|p| p.matches(&group)) {
            continue;
        }
        // An id names files in this folder only (a hand-edited manifest
        // must not point elsewhere).
        if m.id.is_empty() || !m.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            tracing::warn!(file = %path.display(), id = m.id, "retained manifest with an invalid id; skipped");
            continue;
        }
        let data = data_dir
            .join(RETAINED_DIR)
            .join(format!("{}.{}", m.id, m.kind.extension()));
        if !data.is_file() {
            selection.missing.push(format!(
                "{}: the retained data file is missing",
                data.display()
            ));
            continue;
        }
        match key_for(config, sink_cfg, &req.sink, &m, &group) {
            Some(key) => selection.items.push(Item {
                manifest: m,
                key,
                path: data,
            }),
            None => selection.not_applicable += 1,
        }
    }
    selection
        .items
        .sort_by(|a, b| (a.manifest.period_start, &a.key).cmp(&(b.manifest.period_start, &b.key)));
    Ok(selection)
}

/// The key `sink` gives a file: the one it had, or for a sink added later
/// the one the file's route gives it today.
fn key_for(
    config: &Config,
    sink_cfg: &SinkConfig,
    sink: &str,
    m: &Manifest,
    group: &[u8],
) -> Option<String> {
    if let Some(key) = m.keys.get(sink) {
        return Some(key.clone());
    }
    if matches!(sink_cfg, SinkConfig::Td(_)) || m.kind != FileKind::Parquet {
        return None;
    }
    let route = config
        .routes
        .iter()
        .find(|r| r.name == m.route && r.sinks.iter().any(|s| s == sink))?;
    let node = if m.node.is_empty() {
        config.node_id.as_str()
    } else {
        m.node.as_str()
    };
    let parts = KeyParts {
        prefix: "",
        group,
        period_start: m.period_start,
        period_secs: m.period_secs,
        node,
        name: FileName::for_slot(m.slot, m.first_seq)?,
    };
    Some(sink_key(config.sink_prefix(sink), &route.prefix, parts))
}

/// How a redelivery is going; the live node writes it as JSON for the
/// command, which prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub sink: String,
    pub files: usize,
    pub sent: usize,
    pub failed: usize,
    pub rows: u64,
    pub bytes: u64,
    pub not_applicable: usize,
    /// The first few failures, `key: error`.
    pub failures: Vec<String>,
    pub finished: bool,
    /// Why the request could not start at all (then nothing was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Most failures a summary lists one by one.
const MAX_LISTED_FAILURES: usize = 20;

impl Progress {
    pub fn new(sink: &str, selection: &Selection) -> Self {
        let missing = selection.missing.len();
        Self {
            sink: sink.to_string(),
            files: selection.items.len() + missing,
            failed: missing,
            failures: selection
                .missing
                .iter()
                .take(MAX_LISTED_FAILURES)
                .cloned()
                .collect(),
            not_applicable: selection.not_applicable,
            finished: selection.items.is_empty(),
            ..Self::default()
        }
    }

    pub fn record(&mut self, m: &Manifest, key: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.sent += 1;
                self.rows += m.rows;
                self.bytes += m.bytes;
            }
            Err(e) => {
                self.failed += 1;
                if self.failures.len() < MAX_LISTED_FAILURES {
                    self.failures.push(format!("{key}: {e}"));
                }
            }
        }
        self.finished = self.sent + self.failed >= self.files;
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "redeliver to {}: {}/{} files sent, {} rows, {} bytes, {} failed",
            self.sink, self.sent, self.files, self.rows, self.bytes, self.failed
        )
    }

    /// The closing summary; `Err` when something was not delivered.
    pub fn summary(&self) -> anyhow::Result<String> {
        if let Some(e) = &self.error {
            anyhow::bail!("{e}");
        }
        if self.files == 0 && self.not_applicable > 0 {
            anyhow::bail!(
                "nothing sent: the {} retained files in range do not go to sink {} (Parquet files for a Treasure Data sink, or a route that does not send there)",
                self.not_applicable,
                self.sink
            );
        }
        if self.files == 0 {
            anyhow::bail!("nothing sent: no retained file matches --from, --to and --match (retained files are kept by outbox.retain)");
        }
        let mut s = self.line();
        if self.not_applicable > 0 {
            s.push_str(&format!(
                "; {} more retained files in range do not go to this sink",
                self.not_applicable
            ));
        }
        for f in &self.failures {
            s.push_str(&format!("\n  failed: {f}"));
        }
        if self.failed > 0 {
            anyhow::bail!("{s}\n{} files were not delivered; run the command again once the sink is reachable", self.failed);
        }
        Ok(s)
    }
}

/// One upload's retries: from half a second, doubling up to 30 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// Uploads in flight at once on a stopped node.
const PARALLEL_UPLOADS: usize = 8;

/// Sends the selection from a stopped node, `report` called after each file.
pub async fn run_offline(
    sink: Arc<dyn Sink>,
    req: &Request,
    selection: Selection,
    mut report: impl FnMut(&Progress),
) -> Progress {
    let mut progress = Progress::new(&req.sink, &selection);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(req.timeout_secs.min(MAX_TIMEOUT_SECS));
    let mut todo = selection.items.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PARALLEL_UPLOADS {
            let Some(item) = todo.next() else { break };
            let sink = sink.clone();
            running.spawn(async move {
                let result = upload_with_retries(&*sink, &item, deadline).await;
                (item, result)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok((item, result)) => {
                if result.is_ok() {
                    crate::failpoint::hit("redeliver.after_upload");
                }
                progress.record(&item.manifest, &item.key, result.map_err(|e| e.to_string()))
            }
            Err(e) => {
                progress.failed += 1;
                progress.failures.push(format!("upload task: {e}"));
            }
        }
        report(&progress);
    }
    progress.finished = true;
    progress
}

/// Retries one upload until it succeeds, the sink rejects it for good, or
/// `deadline` passes.
async fn upload_with_retries(
    sink: &dyn Sink,
    item: &Item,
    deadline: tokio::time::Instant,
) -> Result<(), SinkError> {
    let mut backoff = RETRY;
    loop {
        match sink.put(&item.key, &item.path).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                // The last attempt is made at the deadline.
                let next = (now + backoff.next_delay()).min(deadline);
                tracing::warn!(key = item.key, error = %e, retry_in_ms = (next - now).as_millis() as u64, "redeliver upload failed; will retry");
                tokio::time::sleep_until(next).await;
            }
        }
    }
}

/// `weir redeliver`: on a stopped node's data_dir (lock free) uploads
/// itself; on a live node's, hands the request to the node and follows its
/// progress. Prints progress about once a second and a summary; `Err` when
/// anything was not delivered.
pub async fn run(config: Config, req: Request) -> anyhow::Result<String> {
    let data_dir = config.data_dir.clone();
    if !data_dir.is_dir() {
        return Err(RedeliverError::NoDataDir(data_dir).into());
    }
    let mut printer = ProgressPrinter::default();
    let progress = match crate::lock::DataDirLock::acquire(&data_dir) {
        Ok(_lock) => {
            let selection = select(&config, &data_dir, &req)?;
            let sinks = crate::sink::build_all(
                &std::iter::once((req.sink.clone(), config.sinks[&req.sink].clone())).collect(),
            )?;
            let Some(sink) = sinks.get(&req.sink).cloned() else {
                anyhow::bail!("sink {} could not be built", req.sink);
            };
            println!(
                "redeliver to {}: {} files from the stopped node's data_dir {}",
                req.sink,
                selection.items.len(),
                data_dir.display()
            );
            run_offline(sink, &req, selection, |p| printer.maybe_print(p)).await
        }
        Err(crate::lock::LockError::Held(_)) => {
            // Checked here too, so a typo fails before the node is asked.
            select(&config, &data_dir, &req)?;
            let id = submit(&data_dir, &req).map_err(|e| {
                anyhow::anyhow!(
                    "cannot leave the request in {}: {e}",
                    data_dir.join(REQUEST_DIR).display()
                )
            })?;
            println!(
                "redeliver to {}: handed to the running node (request {id})",
                req.sink
            );
            let progress = follow_live(&data_dir, &id, &mut printer).await;
            clean_up(&data_dir, &id);
            progress?
        }
        Err(e) => return Err(e.into()),
    };
    if progress.files == 0 && progress.error.is_none() && config.outbox.retain.0.is_zero() {
        anyhow::bail!(
            "nothing to redeliver: outbox.retain is 0s (the default), so delivered files are deleted; set outbox.retain (e.g. \"7d\") to keep them for restore"
        );
    }
    progress.summary()
}

/// Waits for a live node to finish request `id`, printing its progress.
async fn follow_live(
    data_dir: &Path,
    id: &str,
    printer: &mut ProgressPrinter,
) -> Result<Progress, RedeliverError> {
    /// How long a node may take to pick a request up (it looks every second).
    const PICK_UP: Duration = Duration::from_secs(30);
    let asked = tokio::time::Instant::now();
    loop {
        match read_status(data_dir, id) {
            Some(p) if p.finished => return Ok(p),
            Some(p) => printer.maybe_print(&p),
            None if asked.elapsed() > PICK_UP => return Err(RedeliverError::NodeStopped),
            None => {}
        }
        // The node holds the lock while it runs; free means it stopped.
        if crate::lock::DataDirLock::acquire(data_dir).is_ok() {
            return match read_status(data_dir, id) {
                Some(p) if p.finished => Ok(p),
                _ => Err(RedeliverError::NodeStopped),
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints progress lines at most once a second.
#[derive(Default)]
struct ProgressPrinter {
    last: Option<std::time::Instant>,
}

impl ProgressPrinter {
    fn maybe_print(&mut self, p: &Progress) {
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.last = Some(std::time::Instant::now());
            println!("{}", p.line());
        }
    }
}

/// Leaves `req` for the live node owning `data_dir`; returns its id.
pub fn submit(data_dir: &Path, req: &Request) -> std::io::Result<String> {
    let dir = data_dir.join(REQUEST_DIR);
    std::fs::create_dir_all(&dir)?;
    let id = format!("{}-{}", crate::wal::now_ms(), std::process::id());
    let tmp = dir.join(format!("{id}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(req).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{id}.request.json")))?;
    Ok(id)
}

/// Reads the live node's progress for request `id`, if it wrote any yet.
pub fn read_status(data_dir: &Path, id: &str) -> Option<Progress> {
    let path = data_dir.join(REQUEST_DIR).join(format!("{id}.status.json"));
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes what a finished request left.
pub fn clean_up(data_dir: &Path, id: &str) {
    let dir = data_dir.join(REQUEST_DIR);
    let _ = std::fs::remove_file(dir.join(format!("{id}.status.json")));
    let _ = std::fs::remove_file(dir.join(format!("{id}.request.json")));
}

/// A redelivery running in a live node.
struct Job {
    progress: Progress,
    /// Retained file ids it still has to send (pinned against pruning).
    pending: BTreeMap<String, usize>,
}

/// One file of a live redelivery, handed to the sink's worker.
#[derive(Debug)]
pub struct LiveItem {
    pub job: String,
    pub sink: String,
    pub item: Item,
    /// When the worker stops retrying it.
    pub give_up_at: tokio::time::Instant,
}

/// The live node's side: picks up requests, tracks their progress.
pub struct LiveJobs {
    dir: PathBuf,
    data_dir: PathBuf,
    config: Arc<Config>,
    jobs: BTreeMap<String, Job>,
}

impl LiveJobs {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            dir: config.data_dir.join(REQUEST_DIR),
            data_dir: config.data_dir.clone(),
            config,
            jobs: BTreeMap::new(),
        }
    }

    /// Whether any job still sends `id` (so retention keeps it).
    pub fn pins(&self, id: &str) -> bool {
        self.jobs.values().any(|j| j.pending.contains_key(id))
    }

    /// New requests in the folder, each started: returns the items to
    /// hand to the sink workers (empty for an unknown sink, which is
    /// reported to the command at once).
    pub fn take_new(&mut self) -> Vec<LiveItem> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".request.json"))
                .map(str::to_string)
            else {
                continue;
            };
            if self.jobs.contains_key(&id) {
                continue;
            }
            let req = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Request>(&b).ok());
            let _ = std::fs::remove_file(entry.path());
            let Some(req) = req else {
                tracing::warn!(id, "unreadable redeliver request; removed");
                continue;
            };
            let selection = match select(&self.config, &self.data_dir, &req) {
                Ok(s) => s,
                Err(e) => {
                    let error = match e {
                        RedeliverError::UnknownSink { sink, known } => format!(
                            "the running node has no sink {sink:?} (it runs with: {known}); restart it with the new config, or stop it and run this command again"
                        ),
                        e => e.to_string(),
                    };
                    let progress = Progress {
                        sink: req.sink.clone(),
                        finished: true,
                        error: Some(error),
                        ..Progress::default()
                    };
                    self.write_status(&id, &progress);
                    continue;
                }
            };
            tracing::info!(
                id,
                sink = req.sink,
                files = selection.items.len(),
                from = req.from,
                to = req.to,
                pattern = req.pattern,
                "redelivering retained files"
            );
            let progress = Progress::new(&req.sink, &selection);
            self.write_status(&id, &progress);
            let give_up_at = tokio::time::Instant::now()
                + Duration::from_secs(req.timeout_secs.min(MAX_TIMEOUT_SECS));
            let mut pending = BTreeMap::new();
            for item in selection.items {
                *pending.entry(item.manifest.id.clone()).or_insert(0) += 1;
                out.push(LiveItem {
                    job: id.clone(),
                    sink: req.sink.clone(),
                    item,
                    give_up_at,
                });
            }
            if !pending.is_empty() {
                self.jobs.insert(id, Job { progress, pending });
            }
        }
        out
    }

    /// Records one file's outcome; the job's status file follows.
    pub fn record(&mut self, job: &str, item: &Item, result: Result<(), String>) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        j.progress.record(&item.manifest, &item.key, result);
        if let Some(n) = j.pending.get_mut(&item.manifest.id) {
            *n -= 1;
            if *n == 0 {
                j.pending.remove(&item.manifest.id);
            }
        }
        let progress = j.progress.clone();
        if progress.finished {
            tracing::info!(
                id = job,
                sink = progress.sink,
                sent = progress.sent,
                failed = progress.failed,
                "redelivery finished"
            );
            self.jobs.remove(job);
        }
        self.write_status(job, &progress);
    }

    fn write_status(&self, id: &str, progress: &Progress) {
        let path = self.dir.join(format!("{id}.status.json"));
        let tmp = self.dir.join(format!("{id}.status.tmp"));
        let written = serde_json::to_vec(progress)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(id, error = %e, "cannot write redeliver status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let hour = parse_time("2026-11-20T00").unwrap();
        assert_eq!(hour, 1_795_132_800);
        assert_eq!(parse_time("2026-11-20").unwrap(), hour);
        assert_eq!(parse_time("2026-11-20T00:00").unwrap(), hour);
        assert_eq!(parse_time("2026-11-20T00:00:00Z").unwrap(), hour);
        assert_eq!(parse_time("2026-11-20T01:00:00+01:00").unwrap(), hour);
        assert!(parse_time("yesterday")
            .unwrap_err()
            .contains("2026-11-20T00"));
    }

    #[test]
    fn a_summary_fails_when_a_file_was_not_sent() {
        let sel = Selection::default();
        let mut p = Progress::new("lake", &sel);
        p.files = 2;
        let m: Manifest = serde_json::from_str(
            r#"{"version":2,"id":"x","route":"r","group_hex":"61","group":"a","period_start":0,
            "period_secs":3600,"first_seq":1,"covered_through":1,"rows":3,"bytes":4,"keys":{}}"#,
        )
        .unwrap();
        p.record(&m, "k1", Ok(()));
        assert!(!p.finished);
        p.record(&m, "k2", Err("HTTP 500".into()));
        assert!(p.finished);
        let err = p.summary().unwrap_err().to_string();
        assert!(
            err.contains("1/2 files sent, 3 rows") && err.contains("k2: HTTP 500"),
            "{err}"
        );
    }
}
