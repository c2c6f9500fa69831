//! Reloading the config (SIGHUP, or SIGUSR2 as Fluentd does) without a
//! restart: the file is read and validated again; an invalid one is refused
//! with a log line and the node goes on with the config it runs. A valid one
//! rebuilds the stages behind the WAL (sinks, delivery, roller) from it
//! while the listener keeps its connections and the WAL keeps acking: the
//! roller stops with its open files' events in the WAL and the new one
//! rebuilds them, so a reload may finish no file early but re-encodes the
//! open period, and nothing acked is lost or stored twice (see
//! `downstream.rs`). `[forward]`, `[http]`, `[wal]`, `[metrics]`, `node_id` and
//! `data_dir` take a restart; a reload that changes them says so and keeps
//! their running values.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::downstream::{Downstream, Shared};
use crate::config::{Config, Overrides};

/// Where a reload reads the config, and the signals that ask for one.
pub struct Reload {
    /// The config file (`None`: the embedded default, read again).
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
    /// One message per SIGHUP or SIGUSR2.
    pub signals: mpsc::Receiver<()>,
}

/// The next reload asked for; never, without a [`Reload`].
pub(super) async fn next(reload: &mut Option<Reload>) -> Option<()> {
    match reload {
        Some(r) => r.signals.recv().await,
        None => std::future::pending().await,
    }
}

/// The settings only a restart applies that differ, by name.
fn restart_only(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let differ =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    if running.node_id != new.node_id {
        changed.push("node_id");
    }
    if running.data_dir != new.data_dir {
        changed.push("data_dir");
    }
    if differ(&running.forward, &new.forward) {
        changed.push("[forward]");
    }
    if differ(&running.http, &new.http) {
        changed.push("[http]");
    }
    if differ(&running.wal, &new.wal) {
        changed.push("[wal]");
    }
    if differ(&running.metrics, &new.metrics) {
        changed.push("[metrics]");
    }
    changed
}

/// Whether anything behind the WAL differs.
fn downstream_changed(running: &Config, new: &Config) -> bool {
    let view = |c: &Config| {
        format!(
            "{:?}{:?}{:?}{:?}{:?}",
            c.routes, c.sinks, c.roll, c.outbox, c.unmatched_route
        )
    };
    view(running) != view(new)
}

/// Reads the config again and, if it is valid and changes anything behind
/// the WAL, rebuilds those stages from it. Returns the config and stages now
/// running; `Err` only when neither the new nor the old config could start
/// again (weir then stops).
pub(super) async fn apply(
    running: &Arc<Config>,
    reload: Option<&Reload>,
    downstream: Downstream,
    shared: &Shared,
) -> Result<(Arc<Config>, Downstream), String> {
    let Some(reload) = reload else {
        return Ok((running.clone(), downstream));
    };
    let new = match Config::load_with(reload.path.as_deref(), &reload.overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "config reload refused: the file is not valid; still running the previous config");
            return Ok((running.clone(), downstream));
        }
    };
    let kept = restart_only(running, &new);
    if !kept.is_empty() {
        tracing::warn!(settings = ?kept, "config reload: these settings take a restart and keep their running values");
    }
    crate::logging::set_lines_per_minute(new.log.lines_per_minute);
    let mut next = new;
    next.node_id = running.node_id.clone();
    next.data_dir = running.data_dir.clone();
    next.forward = running.forward.clone();
    next.http = running.http.clone();
    next.wal = running.wal.clone();
    next.metrics = running.metrics.clone();
    next.tls_server = running.tls_server.clone();
    if !downstream_changed(running, &next) {
        tracing::info!("config reload: nothing behind the WAL changed");
        return Ok((running.clone(), downstream));
    }
    for w in &next.warnings {
        tracing::warn!("config: {w}");
    }
    let next = Arc::new(next);
    tracing::info!(
        "config reload: rebuilding sinks, delivery and the roller; the listener and the WAL go on"
    );
    downstream.stop().await?;
    match Downstream::start(next.clone(), shared).await {
        Ok(d) => {
            tracing::info!("config reloaded");
            Ok((next, d))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "config reload failed to start; running the previous config again");
            match Downstream::start(running.clone(), shared).await {
                Ok(d) => Ok((running.clone(), d)),
                Err(e) => Err(format!(
                    "the previous config does not start again either: {e:#}"
                )),
            }
        }
    }
}
