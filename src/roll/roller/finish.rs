//! Finishing an output: its footer, its manifest ([`super::describe`]) and
//! its commit to the outbox.

use super::*;

impl Roller {
    /// Finishes an output and hands it to the outbox; it covers every event
    /// of its key through `covered_through`.
    pub(super) fn finish_output(
        &mut self,
        key: &OutputKey,
        why: Why,
        covered_through: u64,
    ) -> Result<(), WriteError> {
        let Some(o) = self.outputs.remove(key) else {
            return Ok(());
        };
        let covered_through = covered_through.max(o.first_seq);
        let closed = match o.output {
            Output::Parquet(w) => w.finish(),
            Output::Records(w, _) => w.finish().map(ClosedFile::from).map_err(WriteError::from),
        };
        let closed = match closed {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&o.path);
                return Err(e);
            }
        };
        let id = self.output_id(key, o.first_seq, o.period_start);
        let (manifest, kind) = describe::manifest(
            &describe::Closed {
                key,
                why,
                id,
                first_seq: o.first_seq,
                period_start: o.period_start,
                covered_through,
                rows: closed.rows,
                bytes: closed.bytes,
                finished_at_ms: crate::wal::now_ms(),
            },
            &describe::Naming {
                config: &self.config,
                wal_identity: &self.wal_identity,
                record_sinks: &self.record_sinks,
                period_secs: self.window.period_secs,
            },
        );
        let early = match why {
            Why::Early(reason) => Some(reason),
            Why::Drain => Some("drain"),
            Why::Deadline | Why::Full => None,
        };
        if let Some(reason) = early {
            self.links
                .metrics
                .roll
                .finished_early(&manifest.group, reason);
        }
        if self.finished_lines.admit(closed.rows, closed.bytes) {
            // A record sink's part has no period.
            let period = (manifest.kind == FileKind::Parquet)
                .then(|| crate::wal::rfc3339(manifest.period_start));
            tracing::info!(
                group = manifest.group,
                period = %period.as_deref().unwrap_or("-"),
                kind,
                rows = closed.rows,
                bytes = closed.bytes,
                "finished file"
            );
        }
        self.links.outbox.commit(&closed.path, &manifest)?;
        self.coverage
            .finished(self.coverage_key(key), covered_through);
        self.links.metrics.roll.finished(kind);
        self.report_gauges();
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!(
                "outbox delivery stopped; the file waits in the outbox for the next start"
            );
        }
        Ok(())
    }
}
