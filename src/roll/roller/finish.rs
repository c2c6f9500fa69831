//! Finishing outputs: the footer, the manifest ([`super::describe`]), the
//! commit to the outbox, then coverage, metrics and delivery. Outputs
//! finished together (deadlines that pass at once, a drain, a batch pushed
//! out at `roll.max_open_files`) are committed as one group: three
//! file-system syncs for all of them instead of three a file
//! ([`crate::outbox::OutboxDir::commit_group`]).

use super::*;

/// A closed output on its way to the outbox.
struct Ready {
    key: OutputKey,
    closed: ClosedFile,
    manifest: Manifest,
    /// Its `kind` label; why it finished early, if it did.
    kind: &'static str,
    early: Option<&'static str>,
    covered_through: u64,
}

impl Roller {
    /// Finishes an output and hands it to the outbox; it covers every event
    /// of its key through `covered_through`.
    pub(super) fn finish_output(
        &mut self,
        key: &OutputKey,
        why: Why,
        covered_through: u64,
    ) -> Result<(), WriteError> {
        let Some(r) = self.close_output(key, why, covered_through, true)? else {
            return Ok(());
        };
        self.links.outbox.commit(&r.closed.path, &r.manifest)?;
        self.hand_over(r);
        Ok(())
    }

    /// Finishes `keys` as one group (see the module doc).
    pub(super) fn finish_outputs(
        &mut self,
        keys: &[OutputKey],
        why: Why,
        covered_through: u64,
    ) -> Result<(), WriteError> {
        if keys.len() < 2 {
            for key in keys {
                self.finish_output(key, why, covered_through)?;
            }
            return Ok(());
        }
        let mut ready = Vec::with_capacity(keys.len());
        for key in keys {
            match self.close_output(key, why, covered_through, false) {
                Ok(Some(r)) => ready.push(r),
                Ok(None) => {}
                Err(e) => {
                    // Rebuilt from the WAL, as after a crash.
                    for r in &ready {
                        let _ = std::fs::remove_file(&r.closed.path);
                    }
                    return Err(e);
                }
            }
        }
        let files: Vec<(&std::path::Path, &Manifest)> = ready
            .iter()
            .map(|r| (r.closed.path.as_path(), &r.manifest))
            .collect();
        self.links.outbox.commit_group(&files)?;
        for r in ready {
            self.hand_over(r);
        }
        Ok(())
    }

    /// Takes an output out and closes it (`sync`: its data synced now),
    /// with its manifest.
    fn close_output(
        &mut self,
        key: &OutputKey,
        why: Why,
        covered_through: u64,
        sync: bool,
    ) -> Result<Option<Ready>, WriteError> {
        let Some(o) = self.outputs.remove(key) else {
            return Ok(None);
        };
        let covered_through = covered_through.max(o.first_seq);
        let closed = match o.output {
            Output::Parquet(w) if sync => w.finish(),
            Output::Parquet(w) => w.finish_unsynced(),
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
                run_id: &self.run_id,
                record_sinks: self.destinations.record_sinks(),
                period_secs: self.window.period_secs,
            },
        );
        let early = match why {
            Why::Early(reason) => Some(reason),
            Why::Drain => Some("drain"),
            Why::Deadline | Why::Full => None,
        };
        Ok(Some(Ready {
            key: key.clone(),
            closed,
            manifest,
            kind,
            early,
            covered_through,
        }))
    }

    /// A committed output: remembered as covered, counted, logged (within
    /// `log.lines_per_minute`) and handed to delivery.
    fn hand_over(&mut self, r: Ready) {
        let Ready {
            key,
            closed,
            manifest,
            kind,
            early,
            covered_through,
        } = r;
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
        self.coverage
            .finished(self.coverage_key(&key), covered_through);
        self.links.metrics.roll.finished(kind);
        self.report_gauges();
        if self.links.finished.blocking_send(manifest).is_err() {
            tracing::warn!(
                "outbox delivery stopped; the file waits in the outbox for the next start"
            );
        }
    }
}
