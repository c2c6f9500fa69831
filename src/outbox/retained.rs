//! Local retention of delivered files, the ground for restore
//! (`outbox.retain`, `outbox.retain_bytes`).
//!
//! A file every sink has is moved to `data_dir/retained/` with a copy of its
//! manifest (which holds each sink's key) instead of being deleted. The
//! oldest periods go first once a file's period ended more than `retain`
//! ago or the folder holds more than `retain_bytes`. With `retain = "0s"`
//! (the default) delivered files are deleted as before.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{Manifest, OutboxDir};
use crate::metrics::{Metrics, Retained};
use crate::wal::sync_dir;

/// The retained folder and what it holds, oldest period first.
pub(crate) struct Retention {
    dir: PathBuf,
    max_age: Duration,
    max_bytes: u64,
    /// (start, id) → (end, data file name, bytes), by [`Manifest::starts_at`]
    /// and [`Manifest::ends_at`].
    files: BTreeMap<(i64, String), (i64, String, u64)>,
    total: u64,
    metrics: Metrics,
}

impl Retention {
    /// Opens `dir` (creating it) and indexes what it holds; `None` when
    /// retention is off (`max_age` zero).
    pub(crate) fn open(
        dir: PathBuf,
        max_age: Duration,
        max_bytes: u64,
        metrics: Metrics,
    ) -> io::Result<Option<Self>> {
        if max_age.is_zero() {
            return Ok(None);
        }
        fs::create_dir_all(&dir)?;
        let mut r = Self {
            dir,
            max_age,
            max_bytes,
            files: BTreeMap::new(),
            total: 0,
            metrics,
        };
        let mut unreadable: Vec<String> = Vec::new();
        for entry in fs::read_dir(&r.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let read = fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| Manifest::from_json(&b).map_err(|e| e.to_string()));
                match read {
                    Ok(m) => {
                        let data = m.data_name();
                        match fs::metadata(r.dir.join(&data)) {
                            Ok(meta) => r.insert(&m, data, meta.len()),
                            Err(_) => {
                                let _ = fs::remove_file(&path);
                            }
                        }
                    }
                    Err(e) => {
                        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                            unreadable.push(format!("{stem}."));
                        }
                        r.metrics.outbox.bookkeeping_failed(
                            "read_retained_manifest",
                            &path.display(),
                            &e,
                        );
                    }
                }
            }
        }
        // A crash between moving a file in and writing its manifest leaves
        // a file nothing describes: it goes (every sink had it). Sets, not
        // scans: days of retained files load in linear time.
        let kept: std::collections::HashSet<&str> =
            r.files.values().map(|(_, data, _)| data.as_str()).collect();
        let unreadable: std::collections::HashSet<&str> = unreadable
            .iter()
            .map(|stem| stem.trim_end_matches('.'))
            .collect();
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(&r.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let described = kept.contains(name)
                || name
                    .split_once('.')
                    .is_some_and(|(stem, _)| unreadable.contains(stem));
            if name.ends_with(".json.tmp") || (super::is_data_name(name) && !described) {
                leftovers.push(path);
            }
        }
        for path in leftovers {
            let _ = fs::remove_file(&path);
        }
        Ok(Some(r))
    }

    fn insert(&mut self, m: &Manifest, data: String, bytes: u64) {
        self.total += bytes;
        self.files
            .insert((m.starts_at(), m.id.clone()), (m.ends_at(), data, bytes));
    }

    /// Moves a delivered file out of the outbox into retention (the caller
    /// prunes).
    pub(crate) fn keep(&mut self, outbox: &OutboxDir, m: &Manifest) -> io::Result<()> {
        let data = m.data_name();
        let bytes = fs::metadata(outbox.data_path(m))?.len();
        let json = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!("{}.json.tmp", m.id));
        super::write_synced(&tmp, &json)?;
        fs::rename(outbox.data_path(m), self.dir.join(&data))?;
        fs::rename(&tmp, self.dir.join(format!("{}.json", m.id)))?;
        sync_dir(&self.dir)?;
        self.insert(m, data, bytes);
        Ok(())
    }

    /// Deletes the oldest files while either bound is passed.
    #[cfg(test)]
    pub(crate) fn prune(&mut self, now_secs: i64) {
        self.prune_except(now_secs, &|_| false);
    }

    /// Deletes the oldest files while either bound is passed, keeping the
    /// files `pinned` says a redelivery is still sending (they go once it
    /// is done).
    pub(crate) fn prune_except(&mut self, now_secs: i64, pinned: &dyn Fn(&str) -> bool) {
        let oldest_end = now_secs - self.max_age.as_secs() as i64;
        let mut total = self.total;
        let mut gone = Vec::new();
        for ((start, id), (end, _, bytes)) in &self.files {
            let expired = *end <= oldest_end;
            if !expired && total <= self.max_bytes {
                break;
            }
            if pinned(id) {
                continue;
            }
            total -= bytes;
            gone.push((*start, id.clone(), expired));
        }
        for (start, id, expired) in gone {
            if let Some((_, data, bytes)) = self.files.remove(&(start, id.clone())) {
                let _ = fs::remove_file(self.dir.join(&data));
                let _ = fs::remove_file(self.dir.join(format!("{id}.json")));
                self.total -= bytes;
                self.metrics.outbox.retained_removed(1);
                tracing::debug!(id, bytes, expired, "retained file removed");
            }
        }
    }

    /// What is kept now (reported by delivery with the outbox's levels).
    pub(crate) fn totals(&self) -> Retained {
        Retained {
            files: self.files.len(),
            bytes: self.total,
            oldest_period: self.files.keys().next().map_or(0, |(start, _)| *start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, period_start: i64) -> Manifest {
        Manifest::for_test(id, period_start)
    }

    #[test]
    fn an_unreadable_retained_manifest_is_counted_and_its_file_stays() {
        let d = tempfile::tempdir().unwrap();
        let outbox = OutboxDir::open(d.path().join("outbox")).unwrap();
        let dir = d.path().join("retained");
        let m = Metrics::new();
        let mut r = Retention::open(dir.clone(), Duration::from_secs(86_400), 1 << 20, m.clone())
            .unwrap()
            .unwrap();
        let mf = manifest("x1", 0);
        fs::write(outbox.data_path(&mf), [0u8; 10]).unwrap();
        r.keep(&outbox, &mf).unwrap();
        fs::write(dir.join("x1.json"), b"{ damaged").unwrap();
        // A data file nothing describes is a crash leftover and goes.
        fs::write(dir.join("y2.parquet"), b"PAR1").unwrap();
        let m = Metrics::new();
        Retention::open(dir.clone(), Duration::from_secs(86_400), 1 << 20, m.clone()).unwrap();
        assert_eq!(
            m.value(
                "weir_outbox_errors_total",
                &[("op", "read_retained_manifest")]
            ),
            1.0
        );
        assert!(dir.join("x1.json").exists() && dir.join(mf.data_name()).exists());
        assert!(!dir.join("y2.parquet").exists());
    }

    #[test]
    fn the_oldest_periods_go_first_by_bytes_and_by_age_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let outbox = OutboxDir::open(d.path().join("outbox")).unwrap();
        let m = Metrics::new();
        let dir = d.path().join("retained");
        let mut r = Retention::open(dir.clone(), Duration::from_secs(86_400), 25, m.clone())
            .unwrap()
            .unwrap();
        let now = 100 * 3600;
        for (id, hour) in [("c", 98), ("a", 90), ("b", 95)] {
            let mf = manifest(id, hour * 3600);
            fs::write(outbox.data_path(&mf), [0u8; 10]).unwrap();
            r.keep(&outbox, &mf).unwrap();
            r.prune(now);
            assert!(!outbox.has_data(&mf), "moved out of the outbox");
        }
        // 30 bytes over a 25-byte budget: hour 90 went first.
        assert_eq!(
            (r.totals().bytes, r.totals().oldest_period),
            (20, 95 * 3600)
        );
        assert!(!dir.join("a.parquet").exists() && dir.join("b.parquet").exists());
        // Reopened, it knows what it holds; a day later hour 95 has expired.
        let mut r = Retention::open(dir.clone(), Duration::from_secs(86_400), 25, m.clone())
            .unwrap()
            .unwrap();
        assert_eq!(r.totals().files, 2);
        r.prune(95 * 3600 + 3600 + 86_400);
        assert_eq!(
            r.totals(),
            Retained {
                files: 1,
                bytes: 10,
                oldest_period: 98 * 3600
            }
        );
        assert_eq!(m.value("weir_outbox_retained_removed_total", &[]), 2.0);
        assert!(Retention::open(dir, Duration::ZERO, 0, m)
            .unwrap()
            .is_none());
    }
}
