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
            &self.route_fresh[*route],
            &describe::Naming {
                config: &self.config,
                run_id: &self.run_id,
                record_sinks: &self.record_sinks,
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
