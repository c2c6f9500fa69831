//! Removes previews (`roll.freshness`, keys under `{prefix}/_fresh/`) once
//! the finished file that replaces them is in the same sink, after a linger
//! so a query that listed them a moment before can still read them.
//!
//! A preview `{dir}/{node}.{kind}-{seq}.f-{n}.parquet` is replaced by
//! `{dir}/{node}.{kind}-{seq}.parquet`, or for `kind = part` also by the
//! period's `{dir}/{node}.parquet` (delivery sends a period's file only
//! after its parts: see `delivery.rs`). That is the rule the README's
//! query applies too, so readers and this sweeper agree.
//!
//! Sweeps are driven by delivery (each finished file delivered names its
//! folder) and by a full pass every [`FULL_SWEEP`] for what a restart left.
//! The time a replacing file was first seen is kept in memory; after a
//! restart the linger starts again, which only delays removal.
//!
//! # Memory
//! One entry per replacing file seen while its previews remain, one per
//! folder waiting for a sweep.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::sink::FRESH_DIR;

/// How often every preview folder is checked, for what a restart or a
/// missed notice left (or a sink that no longer takes previews).
const FULL_SWEEP: Duration = Duration::from_secs(600);

/// The most the last pass at a stop may take.
const LAST_PASS: Duration = Duration::from_secs(10);

/// Where one sink keeps hourly files and previews.
#[derive(Debug, Clone)]
pub(super) struct Roots {
    /// The sink's prefix ("" for none).
    pub(crate) hourly: String,
    /// `{prefix}/_fresh`.
    pub(crate) fresh: String,
}

impl Roots {
    pub(super) fn new(sink_prefix: &str) -> Self {
        Self {
            hourly: sink_prefix.to_string(),
            fresh: crate::sink::join_prefix(sink_prefix, FRESH_DIR),
        }
    }

    /// The preview folder of an hourly folder (both without a trailing `/`).
    pub(super) fn fresh_dir(&self, hourly_dir: &str) -> Option<String> {
        let rest = self.strip(hourly_dir, &self.hourly)?;
        Some(join(&self.fresh, rest))
    }

    fn hourly_dir(&self, fresh_dir: &str) -> Option<String> {
        let rest = self.strip(fresh_dir, &self.fresh)?;
        Some(join(&self.hourly, rest))
    }

    fn strip<'a>(&self, path: &'a str, root: &str) -> Option<&'a str> {
        if root.is_empty() {
            return Some(path);
        }
        path.strip_prefix(root)?.strip_prefix('/')
    }
}

fn join(a: &str, b: &str) -> String {
    crate::sink::join_prefix(a, b)
}

/// Which file names replace a preview named `name` (its last key segment);
/// `None` if it is not a preview name.
pub(super) fn replaced_by(name: &str) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".parquet")?;
    let (base, n) = stem.rsplit_once(".f-")?;
    n.parse::<u64>().ok()?;
    let mut names = vec![format!("{base}.parquet")];
    if let Some((node, seq)) = base.rsplit_once(".part-") {
        seq.parse::<u64>().ok()?;
        names.push(format!("{node}.parquet"));
    }
    Some(names)
}

/// Starts one sink's sweeper; `delivered` names finished files that just
/// arrived in the sink. When `delivered` closes (an orderly stop, a drain)
/// one last pass removes every replaced preview without waiting for the
/// linger, so a node that goes away leaves none behind.
pub(super) fn start(
    sink_name: String,
    sink: Arc<dyn Sink>,
    roots: Roots,
    linger: Duration,
    mut delivered: mpsc::UnboundedReceiver<String>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sweeper = Sweeper {
            sink_name,
            sink,
            roots,
            linger,
            first_seen: HashMap::new(),
            due: BTreeSet::new(),
            metrics,
        };
        // The first full pass after one linger: what the last run left.
        let mut full = tokio::time::interval_at(Instant::now() + linger, FULL_SWEEP);
        loop {
            let next_due = sweeper.due.first().map(|(at, _)| *at);
            tokio::select! {
                key = delivered.recv() => match key {
                    Some(key) => {
                        let now = Instant::now();
                        if let Some((dir, _)) = key.rsplit_once('/') {
                            sweeper.schedule(dir.to_string(), now + sweeper.linger);
                        }
                        sweeper.first_seen.entry(key).or_insert(now);
                    }
                    None => {
                        sweeper.linger = Duration::ZERO;
                        let last = sweeper.full_pass();
                        let _ = tokio::time::timeout(LAST_PASS, last).await;
                        return;
                    }
                },
                _ = full.tick() => sweeper.full_pass().await,
                _ = sleep_until(next_due) => {
                    let now = Instant::now();
                    while let Some((at, dir)) = sweeper.due.first().cloned() {
                        if at > now {
                            break;
                        }
                        sweeper.due.pop_first();
                        sweeper.sweep_dir(&dir).await;
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Sweeper {
    sink_name: String,
    sink: Arc<dyn Sink>,
    roots: Roots,
    linger: Duration,
    /// Replacing file key → when it was first seen.
    first_seen: HashMap<String, Instant>,
    /// (when, hourly folder) to sweep.
    due: BTreeSet<(Instant, String)>,
    metrics: Metrics,
}

impl Sweeper {
    fn schedule(&mut self, hourly_dir: String, at: Instant) {
        if !self.due.iter().any(|(_, d)| *d == hourly_dir) {
            self.due.insert((at, hourly_dir));
        }
    }

    /// Lists every preview folder and sweeps each one.
    async fn full_pass(&mut self) {
        let keys = match self.sink.list(&self.roots.fresh).await {
            Ok(k) => k,
            Err(e) => {
                self.failed(&self.roots.fresh.clone(), &e.to_string());
                return;
            }
        };
        let dirs: BTreeSet<String> = keys
            .iter()
            .filter_map(|k| k.rsplit_once('/').map(|(d, _)| d.to_string()))
            .collect();
        for dir in dirs {
            if let Some(hourly) = self.roots.hourly_dir(&dir) {
                self.sweep_dir(&hourly).await;
            }
        }
    }

    /// Deletes the previews in `hourly_dir`'s preview folder whose
    /// replacing file has been there for the linger; sweeps again later
    /// for those not yet due.
    async fn sweep_dir(&mut self, hourly_dir: &str) {
        let Some(fresh_dir) = self.roots.fresh_dir(hourly_dir) else {
            return;
        };
        let retry = Instant::now() + self.linger.max(Duration::from_secs(10));
        let previews = match self.sink.list(&fresh_dir).await {
            Ok(k) => k,
            Err(e) => {
                self.failed(&fresh_dir, &e.to_string());
                return self.schedule(hourly_dir.to_string(), retry);
            }
        };
        if previews.is_empty() {
            return;
        }
        let finished: BTreeSet<String> = match self.sink.list(hourly_dir).await {
            Ok(k) => k.into_iter().collect(),
            Err(e) => {
                self.failed(hourly_dir, &e.to_string());
                return self.schedule(hourly_dir.to_string(), retry);
            }
        };
        let now = Instant::now();
        let mut again: Option<Instant> = None;
        for key in previews {
            let Some((dir, name)) = key.rsplit_once('/') else {
                continue;
            };
            // Only this folder's own previews (a listing is by prefix).
            if dir != fresh_dir {
                continue;
            }
            let Some(names) = replaced_by(name) else {
                continue;
            };
            let Some(replacing) = names
                .iter()
                .map(|n| format!("{hourly_dir}/{n}"))
                .find(|k| finished.contains(k))
            else {
                continue;
            };
            let seen = *self.first_seen.entry(replacing).or_insert(now);
            if now.duration_since(seen) < self.linger {
                let at = seen + self.linger;
                again = Some(again.map_or(at, |a| a.min(at)));
                continue;
            }
            match self.sink.delete(&key).await {
                Ok(()) => {
                    self.metrics.outbox.previews_removed(&self.sink_name, 1);
                    tracing::debug!(sink = self.sink_name, key, "preview removed");
                }
                Err(e) => {
                    self.failed(&key, &e.to_string());
                    let at = now + self.linger;
                    again = Some(again.map_or(at, |a| a.min(at)));
                }
            }
        }
        match again {
            Some(at) => self.schedule(hourly_dir.to_string(), at),
            None => {
                // Nothing left to wait for in this folder.
                let prefix = format!("{hourly_dir}/");
                self.first_seen.retain(|k, _| !k.starts_with(&prefix));
            }
        }
    }

    fn failed(&self, what: &str, error: &str) {
        self.metrics
            .outbox
            .sweep_failed(&self.sink_name, what, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_name_what_replaces_them() {
        assert_eq!(
            replaced_by("n1.part-7.f-12.parquet").unwrap(),
            vec!["n1.part-7.parquet", "n1.parquet"]
        );
        assert_eq!(
            replaced_by("web-0.x.late-9.f-9.parquet").unwrap(),
            vec!["web-0.x.late-9.parquet"]
        );
        assert!(replaced_by("n1.parquet").is_none());
        assert!(replaced_by("n1.part-7.parquet").is_none());
        let r = Roots::new("dwh");
        assert_eq!(
            r.fresh_dir("dwh/app/dt=2026-12-01/hour=15").unwrap(),
            "dwh/_fresh/app/dt=2026-12-01/hour=15"
        );
        assert_eq!(r.hourly_dir("dwh/_fresh/app/x").unwrap(), "dwh/app/x");
        let bare = Roots::new("");
        assert_eq!(bare.fresh_dir("app/x").unwrap(), "_fresh/app/x");
        assert_eq!(bare.hourly_dir("_fresh/app/x").unwrap(), "app/x");
    }
}
