//! Redelivery through a running node: requests and progress in
//! `data_dir/redeliver/`, picked up by the node's delivery loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{select, Item, Progress, RedeliverError, Request, MAX_TIMEOUT_SECS, REQUEST_DIR};
use crate::config::Config;

/// Leaves `req` for the live node owning `data_dir`; returns its id.
pub(crate) fn submit(data_dir: &Path, req: &Request) -> std::io::Result<String> {
    let dir = data_dir.join(REQUEST_DIR);
    std::fs::create_dir_all(&dir)?;
    let id = format!("{}-{}", crate::wal::now_ms(), std::process::id());
    let tmp = dir.join(format!("{id}.tmp"));
    let json = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    crate::outbox::write_synced(&tmp, &json)?;
    std::fs::rename(&tmp, dir.join(format!("{id}.request.json")))?;
    Ok(id)
}

/// Reads the live node's progress for request `id`, if it wrote any yet.
pub(crate) fn read_status(data_dir: &Path, id: &str) -> Option<Progress> {
    let path = data_dir.join(REQUEST_DIR).join(format!("{id}.status.json"));
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes what a finished request left.
pub(crate) fn clean_up(data_dir: &Path, id: &str) {
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
pub(crate) struct LiveItem {
    pub(crate) job: String,
    pub sink: String,
    pub(crate) item: Item,
    /// When the worker stops retrying it.
    pub(crate) give_up_at: tokio::time::Instant,
}

/// The live node's side: picks up requests, tracks their progress.
pub(crate) struct LiveJobs {
    dir: PathBuf,
    data_dir: PathBuf,
    config: Arc<Config>,
    jobs: BTreeMap<String, Job>,
}

impl LiveJobs {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Self {
            dir: config.data_dir.join(REQUEST_DIR),
            data_dir: config.data_dir.clone(),
            config,
            jobs: BTreeMap::new(),
        }
    }

    /// Whether any job still sends `id` (so retention keeps it).
    pub(crate) fn pins(&self, id: &str) -> bool {
        self.jobs.values().any(|j| j.pending.contains_key(id))
    }

    /// New requests in the folder, each started: returns the items to
    /// hand to the sink workers (empty for an unknown sink, which is
    /// reported to the command at once).
    pub(crate) fn take_new(&mut self) -> Vec<LiveItem> {
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
    pub(crate) fn record(&mut self, job: &str, item: &Item, result: Result<(), String>) {
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
