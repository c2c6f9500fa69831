//! The open outputs, with what they hold together: the memory and the rows
//! buffered (counted in `roll.max_buffer_bytes`), the earliest deadline
//! among them, and the write clock that finds the least recently written.
//! Every change to an open output goes through here, so the totals are
//! always the sum of the outputs.
//!
//! # Memory
//! One [`Open`] per open output, at most `roll.max_open_files`; what each
//! writer holds is counted in [`Outputs::memory`], which the roller keeps
//! under `roll.max_buffer_bytes`.

use std::collections::HashMap;

use super::output::{Open, OutputKey};

/// What the totals last counted of one open output: its memory and
/// buffered rows, and the write clock at its last append (for
/// least-recently-written eviction). Only [`Outputs`] reads or changes it.
#[derive(Default)]
struct Counted {
    memory: usize,
    rows: usize,
    last_write: u64,
}

pub(super) struct Outputs {
    /// Each open output with what the totals last counted of it.
    open: HashMap<OutputKey, (Open, Counted)>,
    memory: usize,
    buffered_rows: usize,
    /// Earliest deadline among open outputs (i64::MAX when none).
    next_deadline_ms: i64,
    write_clock: u64,
}

impl Default for Outputs {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            memory: 0,
            buffered_rows: 0,
            next_deadline_ms: i64::MAX,
            write_clock: 0,
        }
    }
}

impl Outputs {
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub(super) fn contains(&self, key: &OutputKey) -> bool {
        self.open.contains_key(key)
    }

    pub(super) fn get(&self, key: &OutputKey) -> Option<&Open> {
        self.open.get(key).map(|(o, _)| o)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Open> {
        self.open.values().map(|(o, _)| o)
    }

    /// The first WAL record any open output holds (the release mark stays
    /// below it).
    pub(super) fn oldest_first_seq(&self) -> Option<u64> {
        self.values().map(|o| o.first_seq).min()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&OutputKey, &Open)> {
        self.open.iter().map(|(k, (o, _))| (k, o))
    }

    /// Memory the open outputs hold.
    pub(super) fn memory(&self) -> usize {
        self.memory
    }

    /// Rows in the open outputs' memory, not yet on disk.
    pub(super) fn buffered_rows(&self) -> usize {
        self.buffered_rows
    }

    /// Whether an output's deadline may have passed at `now_ms`.
    pub(super) fn any_due(&self, now_ms: i64) -> bool {
        now_ms >= self.next_deadline_ms
    }

    /// Adds an opened output, written now.
    pub(super) fn insert(&mut self, key: OutputKey, open: Open) {
        self.next_deadline_ms = self.next_deadline_ms.min(open.deadline_ms);
        let counted = Counted {
            memory: open.output.memory(),
            rows: open.output.buffered_rows(),
            last_write: self.write_clock,
        };
        self.memory += counted.memory;
        self.buffered_rows += counted.rows;
        if let Some((_, old)) = self.open.insert(key, (open, counted)) {
            self.memory = self.memory.saturating_sub(old.memory);
            self.buffered_rows = self.buffered_rows.saturating_sub(old.rows);
        }
    }

    /// Takes an output out (to finish it).
    pub(super) fn remove(&mut self, key: &OutputKey) -> Option<Open> {
        let (o, counted) = self.open.remove(key)?;
        self.memory = self.memory.saturating_sub(counted.memory);
        self.buffered_rows = self.buffered_rows.saturating_sub(counted.rows);
        Some(o)
    }

    /// Runs `f` on an open output, then counts what it holds again; `write`:
    /// `f` wrote to it (it becomes the most recently written).
    pub(super) fn update<R>(
        &mut self,
        key: &OutputKey,
        write: bool,
        f: impl FnOnce(&mut Open) -> R,
    ) -> Option<R> {
        let (o, counted) = self.open.get_mut(key)?;
        let r = f(o);
        if write {
            counted.last_write = self.write_clock;
            self.write_clock += 1;
        }
        let (mem, rows) = (o.output.memory(), o.output.buffered_rows());
        self.memory = self.memory.saturating_sub(counted.memory) + mem;
        self.buffered_rows = self.buffered_rows.saturating_sub(counted.rows) + rows;
        (counted.memory, counted.rows) = (mem, rows);
        Some(r)
    }

    /// Keys of open outputs passing `pick`, oldest first (a stable order).
    pub(super) fn keys_by_first_seq(&self, pick: impl Fn(&Open) -> bool) -> Vec<OutputKey> {
        let mut keys: Vec<(u64, i64, OutputKey)> = self
            .open
            .iter()
            .filter(|(_, (o, _))| pick(o))
            .map(|(k, (o, _))| (o.first_seq, o.period_start, k.clone()))
            .collect();
        keys.sort_by_key(|k| (k.0, k.1));
        keys.into_iter().map(|(_, _, k)| k).collect()
    }

    /// The output written least recently (the one to finish early).
    pub(super) fn least_recently_written(&self) -> Option<OutputKey> {
        self.open
            .iter()
            .min_by_key(|(_, (o, c))| (c.last_write, o.first_seq))
            .map(|(k, _)| k.clone())
    }

    /// The `n` outputs written least recently, oldest first.
    pub(super) fn least_recently_written_n(&self, n: usize) -> Vec<OutputKey> {
        let mut all: Vec<(u64, u64, &OutputKey)> = self
            .open
            .iter()
            .map(|(k, (o, c))| (c.last_write, o.first_seq, k))
            .collect();
        let n = n.min(all.len());
        if n == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by_key(n - 1, |(w, f, _)| (*w, *f));
        all.truncate(n);
        all.sort_by_key(|(w, f, _)| (*w, *f));
        all.into_iter().map(|(_, _, k)| k.clone()).collect()
    }

    /// Looks for the earliest deadline again (after outputs were finished).
    pub(super) fn recompute_deadline(&mut self) {
        self.next_deadline_ms = self
            .open
            .values()
            .map(|(o, _)| o.deadline_ms)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// Takes every output out.
    pub(super) fn drain(&mut self) -> Vec<Open> {
        self.memory = 0;
        self.buffered_rows = 0;
        self.next_deadline_ms = i64::MAX;
        self.open.drain().map(|(_, (o, _))| o).collect()
    }
}
