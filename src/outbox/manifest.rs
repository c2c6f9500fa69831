//! The manifest of one finished file: what it holds, which WAL records it
//! covers, and where each sink puts it. Written once, atomically, when the
//! roller hands the file over; it is the durable record that the file is
//! finished, so replay after a crash never builds it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an outbox file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A finished Parquet file (period or late).
    #[default]
    Parquet,
    /// A Treasure Data import part: gzip of msgpack record maps.
    TdPart,
}

impl FileKind {
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Parquet => "parquet",
            FileKind::TdPart => "msgpack.gz",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this JSON.
    pub version: u32,
    /// Outbox file id: `{id}.{extension}`, `{id}.json`.
    pub id: String,
    #[serde(default)]
    pub kind: FileKind,
    /// Route name (`route[N]`).
    pub route: String,
    /// The tag's bytes in hex (tags need not be UTF-8).
    pub tag_hex: String,
    /// The tag for people (lossy).
    pub tag: String,
    /// Period start, seconds since the epoch, UTC.
    pub period_start: i64,
    pub period_secs: u64,
    /// For a late file: the WAL sequence of its first event.
    pub late_seq: Option<u64>,
    /// WAL sequence of the first record with an event in this file.
    pub first_seq: u64,
    /// The roller had read the WAL through this sequence when it finished the
    /// file: every event of this (route, tag, period) up to here is in it.
    pub covered_through: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Object key per sink name.
    pub keys: BTreeMap<String, String>,
    /// Wall clock (ms) when the file was finished; for backlog age metrics.
    #[serde(default)]
    pub finished_at_ms: i64,
}

pub const VERSION: u32 = 1;

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(b"a.\xff")).unwrap(), b"a.\xff");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
