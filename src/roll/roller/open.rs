//! How outputs are named and opened, and which WAL records finished ones
//! cover (replay skips those).

use super::output::{CoverageKey, Open};
use super::*;

/// A late or outside file stays open at least this long, so stragglers
/// share a file.
const MIN_SHORT_WINDOW_MS: i64 = 60_000;

impl Roller {
    /// Records a finished file's coverage, from a manifest of this run or
    /// the outbox at start.
    pub(super) fn remember_finished(&mut self, m: &Manifest) {
        let Some(key) = self.key_of_manifest(m) else {
            tracing::warn!(
                id = m.id,
                route = m.route,
                "outbox file of a route or sink no longer configured; its events may be written again on replay"
            );
            return;
        };
        if m.kind == FileKind::Parquet && m.period_secs != self.window.period_secs {
            tracing::warn!(
                id = m.id,
                "manifest from a different roll.period; its events may be written again"
            );
        }
        let ck = self.coverage_key(&key);
        if m.slot == ManifestSlot::Preview {
            self.coverage.previewed(ck, m.covered_through);
        } else {
            self.coverage.finished(ck, m.covered_through);
        }
    }

    pub(super) fn key_of_manifest(&self, m: &Manifest) -> Option<OutputKey> {
        let group = unhex(&m.group_hex)?;
        if m.kind == FileKind::Records || m.slot == ManifestSlot::Records {
            let name = m.keys.keys().next()?;
            let sink = self.destinations.record_sink_named(name)?;
            let group: Arc<str> = String::from_utf8(group).ok()?.into();
            return Some(OutputKey::Records { sink, group });
        }
        let route = self.config.routes.iter().position(|r| r.name == m.route)?;
        let slot = match (m.slot, m.preview_of) {
            (ManifestSlot::Main | ManifestSlot::Part, _)
            | (ManifestSlot::Preview, Some((PreviewSlot::Period, _))) => {
                FileSlot::Period(m.period_start)
            }
            (ManifestSlot::Late, _) | (ManifestSlot::Preview, Some((PreviewSlot::Late, _))) => {
                FileSlot::Late(m.period_start)
            }
            (ManifestSlot::Outside, _)
            | (ManifestSlot::Preview, Some((PreviewSlot::Outside, _))) => FileSlot::Outside,
            (ManifestSlot::Records | ManifestSlot::Preview, _) => return None,
        };
        Some(OutputKey::File {
            route,
            group: group.into(),
            slot,
        })
    }

    /// The fixed-size key under which an output's coverage is kept (the
    /// map holds one per finished file while the WAL holds its records,
    /// which a hostile client can make many).
    pub(super) fn coverage_key(&self, key: &OutputKey) -> CoverageKey {
        let d = self.output_digest(key, 0);
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    }

    /// The stable digest naming an output (route, group, slot; or record
    /// sink and group); an `outside` file's period is `outside_period`.
    pub(super) fn output_digest(&self, key: &OutputKey, outside_period: i64) -> [u8; 32] {
        match key {
            OutputKey::File { route, group, slot } => {
                let (kind, p): (&[u8], i64) = match slot {
                    FileSlot::Period(p) => (b"period", *p),
                    FileSlot::Late(p) => (b"late", *p),
                    FileSlot::Outside => (b"outside", outside_period),
                };
                crate::ids::digest(&[
                    b"file",
                    self.config.routes[*route].name.as_bytes(),
                    group,
                    kind,
                    &p.to_le_bytes(),
                ])
            }
            // "td" for every record sink: Treasure Data was the first, and
            // the ids of parts already in outboxes and WALs stay as they were.
            OutputKey::Records { sink, group } => crate::ids::digest(&[
                b"td",
                self.destinations.record_sink(*sink).name().as_bytes(),
                group.as_bytes(),
            ]),
        }
    }

    /// Whether record `seq`'s events for `key` are in a finished file.
    pub(super) fn is_covered(&self, key: &OutputKey, seq: u64) -> bool {
        self.coverage.is_finished(&self.coverage_key(key), seq)
    }

    /// Outbox id of an output: `{first_seq}-{hash}`, the same on replay.
    pub(super) fn output_id(&self, key: &OutputKey, first_seq: u64, period: i64) -> String {
        let hash = crate::ids::leading_u64(&self.output_digest(key, period));
        format!("{first_seq:020}-{hash:016x}")
    }

    /// Opens the output `key` for a record, first finishing the least
    /// recently written outputs if `roll.max_open_files` are open.
    ///
    /// Those cover through this record: they are either not written by it
    /// or already written (open outputs are written first).
    pub(super) fn open_output(&mut self, key: &OutputKey, r: &WalRecord) -> Result<(), WriteError> {
        let max = self.config.roll.max_open_files;
        if self.outputs.len() >= max {
            // A batch at once (a sixteenth of the bound), committed as one
            // group: a storm of new tags costs a few syncs per batch, not
            // three per file.
            let n = self.outputs.len() + 1 - max + (max / 16);
            let victims = self.outputs.least_recently_written_n(n);
            self.finish_outputs(&victims, Why::Early("max_open_files"), r.seq)?;
        }
        let short_ms = self.window.grace_ms.max(MIN_SHORT_WINDOW_MS);
        let arrival_period = crate::roll::period_start(
            r.arrival_ms.saturating_mul(1_000_000),
            self.window.period_secs,
        );
        let (output, path, deadline_ms, period_start) = match key {
            OutputKey::File { route, slot, .. } => {
                let (deadline, period) = match *slot {
                    FileSlot::Period(p) => (self.window.period_deadline_ms(p), p),
                    FileSlot::Late(p) => (r.arrival_ms.saturating_add(short_ms), p),
                    FileSlot::Outside => (r.arrival_ms.saturating_add(short_ms), arrival_period),
                };
                let path = self
                    .open_dir
                    .join(format!("{}.parquet", self.output_id(key, r.seq, period)));
                let w =
                    PartitionWriter::create(&path, &self.schemas[*route], &self.encoder, period)?;
                (Output::Parquet(Box::new(w)), path, deadline, period)
            }
            OutputKey::Records { sink, .. } => {
                let sink = self.destinations.record_sink(*sink);
                let flush = sink.flush_interval().as_millis() as i64;
                let path = self.open_dir.join(format!(
                    "{}.{}",
                    self.output_id(key, r.seq, 0),
                    sink.extension()
                ));
                let part = sink.create_part(&path)?;
                (
                    Output::Records(part, sink.part_memory()),
                    path,
                    r.arrival_ms.saturating_add(flush),
                    0,
                )
            }
        };
        self.outputs.insert(
            key.clone(),
            Open {
                output,
                path,
                first_seq: r.seq,
                deadline_ms,
                period_start,
                preview: None,
            },
        );
        self.report_gauges();
        Ok(())
    }
}
