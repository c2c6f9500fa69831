//! Finishing an output: its footer, its manifest (object keys per sink, WAL
//! coverage) and its commit to the outbox.

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
        let Some(o) = self.open.remove(key) else {
            return Ok(());
        };
        self.memory = self.memory.saturating_sub(o.memory);
        self.buffered_rows = self.buffered_rows.saturating_sub(o.rows);
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
        let node = self.config.node_id.clone();
        let id = self.output_id(key, o.first_seq, o.period_start);
        // What differs between a Parquet file and a record sink's part:
        // (file kind, route, group, period, slot, object key per sink, label).
        let (file_kind, route, group, period_start, slot, keys, kind, part_extension) = match key {
            OutputKey::File { route, group, slot } => {
                let (name, mslot, kind) = match (slot, why) {
                    (FileSlot::Period(_), Why::Deadline) => {
                        (FileName::Main, ManifestSlot::Main, "period")
                    }
                    (FileSlot::Period(_), _) => {
                        (FileName::Part(o.first_seq), ManifestSlot::Part, "part")
                    }
                    (FileSlot::Late(_), _) => {
                        (FileName::Late(o.first_seq), ManifestSlot::Late, "late")
                    }
                    (FileSlot::Outside, _) => (
                        FileName::Outside(o.first_seq),
                        ManifestSlot::Outside,
                        "outside",
                    ),
                };
                let route_cfg = &self.config.routes[*route];
                let mut keys = std::collections::BTreeMap::new();
                let parts = FileParts {
                    group,
                    period_start: o.period_start,
                    period_secs: self.window.period_secs,
                    node: &node,
                    name,
                };
                for sink in route_cfg.sinks.iter().filter(|s| self.is_object_sink(s)) {
                    if let Some(key) = self
                        .config
                        .sinks
                        .get(sink)
                        .and_then(|c| c.file_key(route_cfg, &parts))
                    {
                        keys.insert(sink.clone(), key);
                    }
                }
                let route = route_cfg.name.clone();
                (
                    FileKind::Parquet,
                    route,
                    group.to_vec(),
                    o.period_start,
                    mslot,
                    keys,
                    kind,
                    None,
                )
            }
            OutputKey::Records { sink, group } => {
                let sink = &self.record_sinks[*sink];
                let mut keys = std::collections::BTreeMap::new();
                keys.insert(
                    sink.name().to_string(),
                    sink.part_key(&node, group, o.first_seq, closed.rows),
                );
                let route = self
                    .config
                    .routes
                    .iter()
                    .find(|r| r.sinks.iter().any(|s| s == sink.name()))
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let group = group.as_bytes().to_vec();
                (
                    FileKind::Records,
                    route,
                    group,
                    0,
                    ManifestSlot::Records,
                    keys,
                    sink.part_label(),
                    Some(sink.extension().to_string()),
                )
            }
        };
        let manifest = Manifest {
            version: VERSION,
            id,
            kind: file_kind,
            route,
            group_hex: hex(&group),
            group: String::from_utf8_lossy(&group).into_owned(),
            period_start,
            period_secs: self.window.period_secs,
            slot,
            late_seq: None,
            first_seq: o.first_seq,
            covered_through,
            rows: closed.rows,
            bytes: closed.bytes,
            keys,
            finished_at_ms: crate::wal::now_ms(),
            node: node.clone(),
            preview_of: None,
            part_extension,
        };
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
                period = period.as_deref().unwrap_or("-"),
                kind,
                rows = closed.rows,
                bytes = closed.bytes,
                "finished file"
            );
        }
        self.links.outbox.commit(&closed.path, &manifest)?;
        let e = self.covered.entry(self.coverage_key(key)).or_insert(0);
        *e = (*e).max(covered_through);
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
