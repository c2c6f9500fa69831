//! Previews (`roll.freshness`): an open file's rows since its last preview,
//! written as a small Parquet file and committed to the outbox.

use super::*;

impl Roller {
    /// Writes every open file's preview out (`roll.freshness`).
    pub(super) fn preview_all(&mut self) -> Result<(), WriteError> {
        let keys: Vec<OutputKey> = self
            .outputs
            .iter()
            .filter(|(_, o)| o.preview.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.preview(&key)?;
        }
        Ok(())
    }

    /// Ends one open file's preview and hands it to the outbox: the rows
    /// the file got since its last preview, under `_fresh/` of the sinks
    /// with `fresh = true`.
    pub(super) fn preview(&mut self, key: &OutputKey) -> Result<(), WriteError> {
        let OutputKey::File { route, group, slot } = key else {
            return Ok(());
        };
        let taken = self.outputs.update(key, false, |o| {
            let Some((from, through)) = o.preview.take() else {
                return Ok(None);
            };
            let Output::Parquet(p) = &mut o.output else {
                return Ok(None);
            };
            let tee = p.take_tee()?;
            Ok::<_, WriteError>(Some((from, through, tee, o.first_seq, o.period_start)))
        });
        let Some((from, through, tee, opened, period_start)) = taken.transpose()?.flatten() else {
            return Ok(());
        };
        let Some(tee) = tee.filter(|t| t.rows > 0) else {
            return Ok(());
        };
        let id = format!("{}-preview", self.output_id(key, from, period_start));
        let path = self.open_dir.join(format!("{id}.parquet"));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&tee.bytes)?;
            f.sync_all()?;
        }
        let manifest = describe::preview_manifest(
            &describe::Preview {
                route: *route,
                group,
                slot: *slot,
                opened,
                period_start,
                from,
                through,
                id,
                rows: tee.rows,
                bytes: tee.bytes.len() as u64,
                finished_at_ms: crate::wal::now_ms(),
            },
            self.destinations.fresh_sinks(*route),
            &describe::Naming {
                config: &self.config,
                run_id: &self.run_id,
                record_sinks: self.destinations.record_sinks(),
                period_secs: self.window.period_secs,
            },
        );
        tracing::debug!(group = manifest.group, rows = tee.rows, "preview written");
        self.links.outbox.commit(&path, &manifest)?;
        self.coverage.previewed(self.coverage_key(key), through);
        self.links.metrics.roll.finished("preview");
        self.report_gauges();
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!("outbox delivery stopped; the preview waits in the outbox");
        }
        Ok(())
    }
}

/// When previews are next written: every `roll.freshness` of WAL time,
/// the first one a whole interval after the roller's clock starts.
pub(super) struct PreviewClock {
    every_ms: Option<i64>,
    next_ms: i64,
}

impl PreviewClock {
    pub(super) fn new(every_ms: Option<i64>) -> Self {
        Self {
            every_ms,
            next_ms: i64::MIN,
        }
    }

    /// Whether previews are due at `now_ms` (the first call only starts
    /// the clock).
    pub(super) fn due(&mut self, now_ms: i64) -> bool {
        let Some(every) = self.every_ms else {
            return false;
        };
        if self.next_ms == i64::MIN {
            self.next_ms = now_ms.saturating_add(every);
            return false;
        }
        now_ms >= self.next_ms
    }

    /// Previews were written at `now_ms`; a failure leaves them due.
    pub(super) fn written(&mut self, now_ms: i64) {
        if let Some(every) = self.every_ms {
            self.next_ms = now_ms.saturating_add(every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PreviewClock;

    #[test]
    fn previews_come_every_interval_after_the_clock_starts_and_stay_due_after_a_failure() {
        let mut off = PreviewClock::new(None);
        assert!(!off.due(0) && !off.due(i64::MAX));
        let mut c = PreviewClock::new(Some(1_000));
        assert!(!c.due(5_000), "the first tick starts the clock");
        assert!(!c.due(5_999));
        assert!(c.due(6_000));
        // Not written (a failure): still due.
        assert!(c.due(6_500));
        c.written(6_500);
        assert!(!c.due(7_499));
        assert!(c.due(7_500));
        c.written(i64::MAX - 10);
        assert!(!c.due(i64::MAX - 11), "no overflow near the end of time");
    }
}
