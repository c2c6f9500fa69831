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

mod live;
mod offline;
mod progress;
mod select;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
pub(crate) use live::{clean_up, read_status, submit, LiveItem, LiveJobs};
pub(crate) use offline::run_offline;
pub(crate) use progress::Progress;
pub(crate) use select::{select, Item, Selection};

/// Longest `--timeout` (a week): a node never plans retries further ahead.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

/// Folder under data_dir where a live node picks up requests.
pub(crate) const REQUEST_DIR: &str = "redeliver";
/// Folder under data_dir holding retained files.
pub(crate) const RETAINED_DIR: &str = "retained";

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
pub(crate) enum RedeliverError {
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
            let ctx = crate::sink::BuildContext {
                node_id: &config.node_id,
                data_dir: &data_dir,
                routes: &config.routes,
                metrics: crate::metrics::Metrics::new(),
            };
            let built = crate::sink::build_all(
                &std::iter::once((req.sink.clone(), config.sinks[&req.sink].clone())).collect(),
                &ctx,
            )?;
            let Some(sink) = built.sinks.get(&req.sink).cloned() else {
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
    /// Progress while files are going; the finished state is the summary's
    /// to print, once.
    fn maybe_print(&mut self, p: &Progress) {
        if !p.finished
            && self
                .last
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.last = Some(std::time::Instant::now());
            println!("{}", p.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::manifest::Manifest;

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
