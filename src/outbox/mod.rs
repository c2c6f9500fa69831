//! The outbox: finished files waiting for their sinks (survives restarts).
//!
//! Layout under `data_dir/outbox/`:
//! - `{id}.parquet`, or a record sink's part `{id}.{extension}` (Treasure
//!   Data's `msgpack.gz`, a forward chunk's `fwd` or `fwd.gz`): the file,
//!   deleted once every sink has it;
//! - `{id}.json`: its [`Manifest`], kept until the WAL no longer holds any of
//!   its records (so replay can tell the file is already finished);
//! - `{id}.{sink}.done`: that sink's durable delivery mark, for a file that
//!   goes to more than one sink (a one-sink file's removal is its mark; a
//!   file that is gone is delivered everywhere).
//!
//! A file enters by [`OutboxDir::commit`]: the synced Parquet file is renamed
//! in, then the manifest is written atomically, then the directory synced.
//! A data file without a manifest is a crash leftover and is removed at
//! start; the WAL still holds its events. A file a sink rejects for good goes
//! to `data_dir/deadletter/{sink}/` with the reason, and counts as handled.

pub(crate) mod config;
mod delivery;
mod levels;
pub(crate) mod manifest;
mod order;
mod previews;
pub mod redeliver;
mod retained;
mod verdict;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) use delivery::{start as start_delivery, DeliveryLinks};
pub(crate) use manifest::Manifest;
pub(crate) use retained::Retention;

use crate::wal::sync_dir;
pub(crate) use manifest::{hex, unhex, FileKind, PreviewSlot, Slot, VERSION};

/// Bytes of outbox files some sink still needs, against the configured
/// limit. Updated by delivery, read by the roller (which waits while it is
/// over) and by `/readyz`.
pub(crate) struct Backlog {
    bytes: std::sync::atomic::AtomicU64,
    /// `outbox.max_backlog_bytes` (a reload may change it).
    limit: std::sync::atomic::AtomicU64,
    metrics: crate::metrics::Metrics,
}

impl Backlog {
    pub(crate) fn new(limit: u64, metrics: crate::metrics::Metrics) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            bytes: std::sync::atomic::AtomicU64::new(0),
            limit: std::sync::atomic::AtomicU64::new(limit),
            metrics,
        })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn is_over(&self) -> bool {
        self.bytes() > self.limit()
    }

    /// A new delivery counts the backlog again from the outbox's files.
    pub(crate) fn reset(&self, limit: u64) {
        self.limit
            .store(limit, std::sync::atomic::Ordering::Relaxed);
        self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The roller pauses (over the limit) or resumes (under `low_water`).
    pub(crate) fn paused(&self, paused: bool) {
        self.metrics
            .outbox
            .blocked(paused, self.bytes(), self.limit());
    }

    /// Where a paused roller resumes: three quarters of the limit.
    pub(crate) fn low_water(&self) -> u64 {
        self.limit() / 4 * 3
    }

    pub(crate) fn add(&self, n: u64) {
        let before = self
            .bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let after = before + n;
        // Say so loudly each time the backlog crosses a quarter of its limit.
        let quarter = (self.limit() / 4).max(1);
        if after / quarter > before / quarter {
            tracing::warn!(
                backlog_bytes = after,
                limit = self.limit(),
                "outbox backlog growing: a sink is behind or down (at the limit weir stops finishing files)"
            );
        }
    }

    pub(crate) fn sub(&self, n: u64) {
        let _ = self.bytes.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |v| Some(v.saturating_sub(n)),
        );
    }
}

/// Writes `bytes` to a new file at `path` and syncs it: the temporary half
/// of a write that a rename then makes visible whole.
/// Whether a file name in the outbox (or the retained folder) is a finished
/// file's data (`{id}.parquet`, a record sink's `{id}.{extension}`), not a
/// manifest, a manifest being written or a delivery mark.
pub(crate) fn is_data_name(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with('.')
        && ![".json", ".json.tmp", ".done"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Makes everything written to the file system holding `dir` durable
/// (`syncfs`): data and names of many files at once.
pub(crate) fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = fs::File::open(dir)?;
    // SAFETY: `d` is an open descriptor for the call's duration.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The outbox folder.
#[derive(Debug, Clone)]
pub(crate) struct OutboxDir {
    dir: PathBuf,
}

impl OutboxDir {
    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub(crate) fn data_path(&self, m: &Manifest) -> PathBuf {
        self.dir.join(m.data_name())
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn done_path(&self, id: &str, sink: &str) -> PathBuf {
        self.dir.join(format!("{id}.{sink}.done"))
    }

    /// Moves a closed, synced file into the outbox with its manifest.
    pub(crate) fn commit(&self, file: &Path, manifest: &Manifest) -> io::Result<()> {
        fs::rename(file, self.data_path(manifest))?;
        let json = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!("{}.json.tmp", manifest.id));
        write_synced(&tmp, &json)?;
        fs::rename(&tmp, self.manifest_path(&manifest.id))?;
        sync_dir(&self.dir)
    }

    /// Moves closed files (not synced yet) into the outbox with their
    /// manifests, with three file-system syncs for the whole group instead
    /// of three syncs a file, in the order that keeps a crash harmless:
    /// the data durable before any manifest names it, each manifest durable
    /// under its temporary name before it takes its real one. A crash
    /// before the end leaves data without a manifest (removed at start) or
    /// a manifest whose data is whole; the WAL still holds every event.
    pub(crate) fn commit_group(&self, files: &[(&Path, &Manifest)]) -> io::Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        sync_filesystem(&self.dir)?;
        let mut named = Vec::with_capacity(files.len());
        for (file, manifest) in files {
            fs::rename(file, self.data_path(manifest))?;
            let json = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
            let tmp = self.dir.join(format!("{}.json.tmp", manifest.id));
            fs::write(&tmp, &json)?;
            named.push((tmp, self.manifest_path(&manifest.id)));
        }
        sync_filesystem(&self.dir)?;
        for (tmp, path) in named {
            fs::rename(tmp, path)?;
        }
        sync_dir(&self.dir)
    }

    /// Every manifest, after removing crash leftovers. Unreadable manifests
    /// are counted, logged and skipped; they and their data files stay for
    /// an operator.
    pub(crate) fn load(&self, metrics: &crate::metrics::Metrics) -> io::Result<Vec<Manifest>> {
        let mut manifests = Vec::new();
        let mut data = Vec::new();
        let mut unreadable: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".json.tmp") {
                let _ = fs::remove_file(&path);
            } else if is_data_name(name) {
                data.push(path.clone());
            } else if name.ends_with(".json") {
                let read = fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| Manifest::from_json(&b).map_err(|e| e.to_string()))
                    .and_then(|m| {
                        // An id names files in this folder only (a hand-edited
                        // manifest must not point elsewhere).
                        let ok = !m.id.is_empty()
                            && m.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                        if ok {
                            Ok(m)
                        } else {
                            Err(format!("invalid id {:?}", m.id))
                        }
                    });
                match read {
                    Ok(m) => manifests.push(m),
                    Err(e) => {
                        unreadable.push(format!("{}.", name.trim_end_matches(".json")));
                        metrics
                            .outbox
                            .bookkeeping_failed("read_manifest", &path.display(), &e);
                    }
                }
            }
        }
        // Sets, not scans: an outbox of many thousand files (a sink down
        // for hours) loads in linear time.
        let described: std::collections::HashSet<PathBuf> =
            manifests.iter().map(|m| self.data_path(m)).collect();
        let unreadable: std::collections::HashSet<&str> = unreadable
            .iter()
            .map(|id| id.trim_end_matches('.'))
            .collect();
        for path in data {
            // The data of an unreadable manifest is not a crash leftover.
            let of_unreadable = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
                .is_some_and(|(id, _)| unreadable.contains(id));
            if !described.contains(&path) && !of_unreadable {
                tracing::info!(file = %path.display(), "removing unfinished outbox file left by a crash");
                let _ = fs::remove_file(&path);
            }
        }
        manifests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(manifests)
    }

    /// Whether a file's deliveries are marked one by one. A file for one
    /// sink has no marks: its removal, once that sink has it, is the mark
    /// (two fsyncs and a file created and deleted fewer per file).
    fn marks_each_sink(m: &Manifest) -> bool {
        m.keys.len() > 1
    }

    /// Whether `sink` has the file: its mark says so, or the file is gone
    /// (the outbox removes a file only once every sink has it).
    pub(crate) fn is_delivered(&self, m: &Manifest, sink: &str) -> bool {
        !self.has_data(m) || (Self::marks_each_sink(m) && self.done_path(&m.id, sink).exists())
    }

    /// Whether every sink's delivery is recorded, so the file may go; asked
    /// once no sink is pending, which for a one-sink file is the record.
    pub(crate) fn all_marked(&self, m: &Manifest) -> bool {
        !Self::marks_each_sink(m) || m.keys.keys().all(|s| self.is_delivered(m, s))
    }

    /// Durably marks one sink's delivery (nothing to do for a one-sink
    /// file: a crash before its removal sends it again, to the same key).
    pub(crate) fn mark_delivered(&self, m: &Manifest, sink: &str) -> io::Result<()> {
        if !Self::marks_each_sink(m) {
            return Ok(());
        }
        fs::File::create(self.done_path(&m.id, sink))?.sync_all()?;
        sync_dir(&self.dir)
    }

    /// Writes the marks that one-sink files no longer get, for the files
    /// whose manifests stay (their WAL records are still there), so that a
    /// build from before that change, started on this data_dir, does not
    /// wait forever for files that are gone. Once, at an orderly stop.
    pub(crate) fn mark_for_older_builds<'a>(
        &self,
        delivered: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> io::Result<()> {
        let mut wrote = false;
        for (id, sink) in delivered {
            let path = self.done_path(id, sink);
            if !path.exists() {
                fs::File::create(path)?;
                wrote = true;
            }
        }
        if wrote {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub(crate) fn has_data(&self, m: &Manifest) -> bool {
        self.data_path(m).exists()
    }

    /// Keeps a file a sink rejected for good, with the reason, under
    /// `deadletter/{sink}/` beside the outbox.
    pub(crate) fn dead_letter(
        &self,
        m: &Manifest,
        sink: &str,
        reason: &str,
    ) -> io::Result<PathBuf> {
        let dir = self
            .dir
            .parent()
            .unwrap_or(&self.dir)
            .join("deadletter")
            .join(sink);
        fs::create_dir_all(&dir)?;
        let target = dir.join(m.data_name());
        fs::copy(self.data_path(m), &target)?;
        let mut note = serde_json::to_value(m).map_err(io::Error::other)?;
        note["dead_letter_reason"] = serde_json::Value::String(reason.to_string());
        note["sink"] = serde_json::Value::String(sink.to_string());
        fs::write(
            dir.join(format!("{}.json", m.id)),
            serde_json::to_vec_pretty(&note).map_err(io::Error::other)?,
        )?;
        fs::File::open(&target)?.sync_all()?;
        sync_dir(&dir)?;
        Ok(target)
    }

    /// Removes the data file once every sink has it.
    pub(crate) fn remove_data(&self, m: &Manifest) -> io::Result<()> {
        match fs::remove_file(self.data_path(m)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Forgets a delivered file whose data is already gone, by id.
    pub(crate) fn forget_delivered(&self, id: &str, sinks: &[String]) -> io::Result<()> {
        for sink in sinks {
            let _ = fs::remove_file(self.done_path(id, sink));
        }
        match fs::remove_file(self.manifest_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Forgets a delivered file entirely (its WAL records are gone).
    pub(crate) fn forget(&self, m: &Manifest) -> io::Result<()> {
        self.remove_data(m)?;
        for sink in m.keys.keys() {
            let _ = fs::remove_file(self.done_path(&m.id, sink));
        }
        fs::remove_file(self.manifest_path(&m.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str) -> Manifest {
        Manifest::for_test(id, 0)
    }

    #[test]
    fn an_unreadable_manifest_is_counted_and_its_data_stays_while_crash_leftovers_go() {
        let d = tempfile::tempdir().unwrap();
        let outbox = OutboxDir::open(d.path().join("outbox")).unwrap();
        for id in ["a1", "b2"] {
            let f = d.path().join(format!("{id}.tmp"));
            fs::write(&f, b"PAR1").unwrap();
            outbox.commit(&f, &manifest(id)).unwrap();
        }
        // b2's manifest is damaged; c3 is data a crash left without one.
        fs::write(outbox.manifest_path("b2"), b"{ not json").unwrap();
        fs::write(outbox.dir.join("c3.parquet"), b"PAR1").unwrap();
        let metrics = crate::metrics::Metrics::new();
        let loaded = outbox.load(&metrics).unwrap();
        assert_eq!(
            loaded.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["a1"]
        );
        assert_eq!(
            metrics.value("weir_outbox_errors_total", &[("op", "read_manifest")]),
            1.0
        );
        assert!(
            outbox.dir.join("b2.parquet").exists(),
            "kept for an operator"
        );
        assert!(outbox.manifest_path("b2").exists());
        assert!(
            !outbox.dir.join("c3.parquet").exists(),
            "a crash leftover goes"
        );
    }
}
