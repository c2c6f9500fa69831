//! Outputs: what each open file or part is (its key, slot and writer).

use super::*;

/// What an output is: also the key under which replay coverage is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum OutputKey {
    /// A Parquet file of one route and group (tag, or route name).
    File {
        route: usize,
        group: Arc<[u8]>,
        slot: FileSlot,
    },
    /// A part of one record sink (index into `record_sinks`) and group.
    Records { sink: usize, group: Arc<str> },
}

/// Coverage is kept under 16 bytes of a hash of the output's identity.
pub(super) type CoverageKey = [u8; 16];

/// [`Slot`] without the outside direction: one outside file per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum FileSlot {
    Period(i64),
    Late(i64),
    Outside,
}

impl From<Slot> for FileSlot {
    fn from(s: Slot) -> Self {
        match s {
            Slot::Period(p) => FileSlot::Period(p),
            Slot::Late(p) => FileSlot::Late(p),
            Slot::Outside(_) => FileSlot::Outside,
        }
    }
}

pub(super) enum Output {
    Parquet(Box<PartitionWriter>),
    /// A record sink's part, and the memory it holds.
    Records(Box<dyn RecordPart>, usize),
}

impl Output {
    pub(super) fn memory(&self) -> usize {
        match self {
            Output::Parquet(w) => w.memory(),
            Output::Records(_, memory) => *memory,
        }
    }

    pub(super) fn buffered_rows(&self) -> usize {
        match self {
            Output::Parquet(w) => w.buffered_rows(),
            Output::Records(..) => 0,
        }
    }
}

/// One open output.
pub(super) struct Open {
    pub(super) output: Output,
    pub(super) path: PathBuf,
    pub(super) first_seq: u64,
    pub(super) deadline_ms: i64,
    /// The period the file is filed under (an outside file's: when it opened).
    pub(super) period_start: i64,
    /// While a preview is being collected (`roll.freshness`): the first
    /// WAL record in it, and the last.
    pub(super) preview: Option<(u64, u64)>,
}

/// Why an output is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// Its deadline passed.
    Deadline,
    /// A record sink's part reached its `max_part_bytes`.
    Full,
    /// Finished early to stay within a bound: `max_open_files` or `memory`.
    Early(&'static str),
    /// Finished early for a drain.
    Drain,
}
