//! Records in: route a WAL record, sort its events into outputs, append
//! them, and keep open files within `roll.max_buffer_bytes`.

use super::*;

/// Distinct past periods one record's late events may open late files
/// for; its late events in other periods go to the outside file.
const MAX_LATE_PERIODS_PER_RECORD: usize = 4;

/// A file buffering less than this is finished early rather than flushed
/// when memory runs short: tiny row groups would make a poor Parquet file.
const MIN_FLUSH_BYTES: usize = 1 << 20;

/// A record's events bound for one output.
pub(super) struct Write<'a> {
    pub(super) key: OutputKey,
    pub(super) events: Vec<Event<'a>>,
}

impl Roller {
    pub(super) fn route_of(&mut self, tag: &[u8]) -> Option<usize> {
        self.destinations.route_of(tag, &self.config)
    }

    pub(super) fn on_record(&mut self, r: &WalRecord) -> Result<(), Failure> {
        self.advance(r.arrival_ms).map_err(Failure::File)?;
        let tag = r.batch.tag();
        if crate::failpoint::value("roll.fail_tag").is_some_and(|t| t.as_bytes() == tag) {
            return Err(Failure::Record(WriteError::Injected));
        }
        #[cfg(test)]
        if std::env::var("WEIR_TEST_PANIC_TAG").is_ok_and(|t| t.as_bytes() == tag) {
            panic!("test panic for {}", String::from_utf8_lossy(tag));
        }
        let Some(route) = self.route_of(tag) else {
            self.unrouted
                .record(tag, r.batch.len() as u64, &self.links.metrics.roll);
            self.last_seq = Some(r.seq);
            return Ok(());
        };
        let mut writes = self.plan(r, route);
        // Outputs already open first: then every output evicted while this
        // record opens new ones has all of this record's events it will
        // get, so it covers through this record (see `open_output`).
        writes.sort_by_key(|w| !self.outputs.contains(&w.key));
        let split = writes
            .iter()
            .position(|w| !self.outputs.contains(&w.key))
            .unwrap_or(writes.len());
        let m = self.links.metrics.clone();
        let mut rows = 0u64;
        for (i, w) in writes.iter().enumerate() {
            if i == split {
                self.enforce_memory(r.seq)?;
            }
            rows += self.write(r, w, tag)?;
            if i >= split {
                self.enforce_memory(r.seq)?;
            }
        }
        if split == writes.len() {
            self.enforce_memory(r.seq)?;
        }
        m.roll.written(rows);
        self.last_seq = Some(r.seq);
        self.report_gauges();
        Ok(())
    }

    /// Sorts a record's events into the outputs they go to, dropping
    /// (and counting) those already in a finished file.
    pub(super) fn plan<'a>(&mut self, r: &'a WalRecord, route: usize) -> Vec<Write<'a>> {
        let m = self.links.metrics.clone();
        let mut writes = Vec::new();
        let tag = r.batch.tag();
        let mut skipped = 0u64;
        for &sink in self.destinations.records_of(route) {
            let key = OutputKey::Records {
                sink,
                group: self.destinations.record_sink(sink).group(tag),
            };
            if self.is_covered(&key, r.seq) {
                skipped += r.batch.len() as u64;
                continue;
            }
            writes.push(Write {
                key,
                events: r.batch.events().collect(),
            });
        }
        if self.destinations.has_files(route) {
            let group: Arc<[u8]> = match self.config.routes[route].files {
                FileGrouping::PerTag => tag.into(),
                FileGrouping::PerRoute => self.config.routes[route].name.as_bytes().into(),
            };
            let (mut late, mut past, mut future) = (0u64, 0u64, 0u64);
            let mut by_slot: Vec<(FileSlot, Vec<Event<'a>>)> = Vec::new();
            let mut index: HashMap<FileSlot, usize> = HashMap::new();
            let mut late_periods: Vec<i64> = Vec::new();
            for ev in r.batch.events() {
                let mut slot = self.window.slot(ev.time_ns, r.arrival_ms);
                // A request dated over many past periods (a wrong clock)
                // would make a late file per period: past a few, outside.
                if let Slot::Late(p) = slot {
                    if !late_periods.contains(&p) {
                        if late_periods.len() >= MAX_LATE_PERIODS_PER_RECORD {
                            slot = Slot::Outside(crate::roll::Direction::Past);
                        } else {
                            late_periods.push(p);
                        }
                    }
                }
                match slot {
                    Slot::Period(_) => {}
                    Slot::Late(_) => late += 1,
                    Slot::Outside(crate::roll::Direction::Past) => past += 1,
                    Slot::Outside(crate::roll::Direction::Future) => future += 1,
                }
                let fs = FileSlot::from(slot);
                // Most records hold one slot: check the last before hashing.
                let at = match by_slot.last() {
                    Some((s, _)) if *s == fs => Some(by_slot.len() - 1),
                    _ => index.get(&fs).copied(),
                };
                match at {
                    Some(i) => by_slot[i].1.push(ev),
                    None => {
                        index.insert(fs, by_slot.len());
                        by_slot.push((fs, vec![ev]));
                    }
                }
            }
            for (slot, events) in by_slot {
                let key = OutputKey::File {
                    route,
                    group: group.clone(),
                    slot,
                };
                if self.is_covered(&key, r.seq) {
                    skipped += events.len() as u64;
                    continue;
                }
                writes.push(Write { key, events });
            }
            m.roll.sorted(late, past, future, 0);
        }
        if skipped > 0 {
            m.roll.sorted(0, 0, 0, skipped);
        }
        writes
    }

    /// Appends one planned write; returns the rows added.
    pub(super) fn write(
        &mut self,
        r: &WalRecord,
        w: &Write<'_>,
        tag: &[u8],
    ) -> Result<u64, Failure> {
        if let OutputKey::Records { sink, .. } = &w.key {
            let limit = self.destinations.record_sink(*sink).max_part_bytes();
            let incoming = r.batch.as_bytes().len();
            let full = self.outputs.get(&w.key).is_some_and(|o| match &o.output {
                Output::Records(t, _) => t.raw_bytes() > 0 && t.raw_bytes() + incoming > limit,
                Output::Parquet(_) => false,
            });
            if full {
                // This record's events go to the next part.
                self.finish_output(&w.key, Why::Full, r.seq.saturating_sub(1))
                    .map_err(Failure::File)?;
            }
        }
        if !self.outputs.contains(&w.key) {
            self.open_output(&w.key, r).map_err(Failure::File)?;
        }
        // A preview starts with the first record after the last one
        // written (on replay, after what earlier previews hold); the digest
        // lookup is made only then, not for every record.
        let start_preview = match &w.key {
            OutputKey::File { route, .. }
                if !self.destinations.fresh_sinks(*route).is_empty()
                    && self
                        .outputs
                        .get(&w.key)
                        .is_some_and(|o| o.preview.is_none()) =>
            {
                self.coverage
                    .is_past_previews(&self.coverage_key(&w.key), r.seq)
            }
            _ => false,
        };
        let (config, metrics) = (&self.config, &self.links.metrics);
        let written = self.outputs.update(&w.key, true, |o| {
            if start_preview {
                if let Output::Parquet(p) = &mut o.output {
                    p.start_tee().map_err(Failure::File)?;
                    o.preview = Some((r.seq, r.seq));
                }
            }
            if let Some((_, last)) = &mut o.preview {
                *last = r.seq;
            }
            let mut rows = 0u64;
            let mut bad = 0u64;
            for ev in &w.events {
                let result = match &mut o.output {
                    Output::Parquet(p) => {
                        if rows == 0 && bad == 0 {
                            p.set_tag(tag);
                        }
                        p.append(ev.time_ns, ev.record)
                    }
                    Output::Records(t, _) => t
                        .append(tag, ev.time_ns, ev.record)
                        .map_err(WriteError::from),
                };
                match result {
                    Ok(()) => rows += 1,
                    Err(WriteError::BadRecord(e)) => {
                        bad += 1;
                        metrics.roll.bad_record(r.seq, &e);
                    }
                    Err(e) => return Err(Failure::Record(e)),
                }
            }
            if let (Output::Parquet(p), OutputKey::File { route, .. }) = (&mut o.output, &w.key) {
                let route = &config.routes[*route];
                for (i, n, seen) in p.take_mismatches() {
                    if let Some((column, declared)) = route.columns.get(i) {
                        metrics
                            .roll
                            .type_mismatch(&route.name, column, declared.as_str(), seen, n);
                    }
                }
            }
            Ok::<u64, Failure>(rows)
        });
        let Some(written) = written else {
            return Ok(0);
        };
        let rows = written?;
        Ok(if matches!(w.key, OutputKey::File { .. }) {
            rows
        } else {
            0
        })
    }

    /// Keeps memory under `roll.max_buffer_bytes`: writes the largest
    /// buffer out as a row group, or, when every buffer is small (many open
    /// files), finishes the least recently written file early.
    pub(super) fn enforce_memory(&mut self, seq: u64) -> Result<(), Failure> {
        let budget = self.config.roll.max_buffer_bytes.as_usize();
        let min_flush = MIN_FLUSH_BYTES.min(budget / 8).max(1);
        if self.outputs.memory() > budget {
            // Previews holding a good share of the memory go out early,
            // rather than files being finished early; a few small ones are
            // not worth a file each.
            let previews: usize = self
                .outputs
                .values()
                .filter_map(|o| match &o.output {
                    Output::Parquet(p) if o.preview.is_some() => Some(p.tee_bytes()),
                    _ => None,
                })
                .sum();
            if previews >= budget / 8 {
                self.preview_all().map_err(Failure::File)?;
            }
        }
        while self.outputs.memory() > budget && !self.outputs.is_empty() {
            let largest = self
                .outputs
                .iter()
                .filter_map(|(k, o)| match &o.output {
                    Output::Parquet(p) => Some((p.buffered_bytes(), k)),
                    Output::Records(..) => None,
                })
                .max_by_key(|(b, _)| *b)
                .map(|(b, k)| (b, k.clone()));
            match largest {
                Some((buffered, key)) if buffered >= min_flush => {
                    let flushed = self.outputs.update(&key, false, |o| match &mut o.output {
                        Output::Parquet(p) => p.flush_row_group().map(|()| true),
                        Output::Records(..) => Ok(false),
                    });
                    let Some(flushed) = flushed else {
                        break;
                    };
                    if flushed.map_err(Failure::File)? {
                        self.links.metrics.roll.row_group();
                    }
                }
                _ => {
                    let Some(victim) = self.outputs.least_recently_written() else {
                        break;
                    };
                    self.finish_output(&victim, Why::Early("memory"), seq)
                        .map_err(Failure::File)?;
                }
            }
        }
        Ok(())
    }
}
