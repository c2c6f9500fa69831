//! Which retained files a request names, and the key each gets.

use std::path::{Path, PathBuf};

use super::{RedeliverError, Request, RETAINED_DIR};
use crate::config::Config;
use crate::outbox::manifest::{FileKind, Manifest};
use crate::router::TagPattern;
use crate::sink::config::SinkConfig;
use crate::sink::{FileName, FileParts};

/// One file to send.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) manifest: Manifest,
    pub(crate) key: String,
    pub path: PathBuf,
}

/// The files a request selects.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub(crate) items: Vec<Item>,
    /// Files in range the sink cannot take (a Parquet file for a Treasure
    /// Data sink, a part made for another Treasure Data sink, a route that
    /// no longer sends to the sink).
    pub(crate) not_applicable: usize,
    /// Manifests in range whose data file is gone (they count as failed).
    pub(crate) missing: Vec<String>,
}

/// Reads the retained manifests and picks those `req` names.
pub(crate) fn select(
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
        let group = crate::outbox::manifest::unhex(&m.group_hex)
            .unwrap_or_else(|| m.group.clone().into_bytes());
        if at < req.from || at >= req.to || !patterns.iter().any(|p| p.matches(&group)) {
            continue;
        }
        // An id names files in this folder only (a hand-edited manifest
        // must not point elsewhere).
        if m.id.is_empty() || !m.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            tracing::warn!(file = %path.display(), id = m.id, "retained manifest with an invalid id; skipped");
            continue;
        }
        let data = data_dir.join(RETAINED_DIR).join(m.data_name());
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
    if sink_cfg.capabilities().records || m.kind != FileKind::Parquet {
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
    let parts = FileParts {
        group,
        period_start: m.period_start,
        period_secs: m.period_secs,
        node,
        name: FileName::for_slot(m.slot, m.first_seq)?,
    };
    sink_cfg.file_key(route, &parts)
}
