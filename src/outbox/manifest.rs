//! The manifest of one finished file: what it holds, which WAL records it
//! covers, and where each sink puts it. Written once, atomically, when the
//! roller hands the file over; it is the durable record that the file is
//! finished, so replay after a crash never builds it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an outbox file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileKind {
    /// A finished Parquet file (period or late).
    #[default]
    Parquet,
    /// A [record sink](crate::sink::records)'s part (Treasure Data's
    /// import part, a forward chunk); its extension is the manifest's
    /// `part_extension`. Written `td_part` before there were other record
    /// sinks.
    #[serde(alias = "td_part")]
    Records,
}

/// Which file of its group and period a finished file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Slot {
    /// The period's one file, finished at period end + grace.
    #[default]
    Main,
    /// The period's file finished early (open-file or memory bound, drain).
    Part,
    /// Events that arrived after their period's file was finished.
    Late,
    /// Events dated outside `[arrival - roll.max_past, arrival + roll.max_future]`.
    Outside,
    /// A record sink's part (`td` before there were other record sinks).
    #[serde(alias = "td")]
    Records,
    /// A preview of a file still open (`roll.freshness`), for the sinks
    /// with `fresh = true`; never retained or redelivered.
    Preview,
}

/// For a preview: the open file it previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PreviewSlot {
    Period,
    Late,
    Outside,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Format version of this JSON.
    pub(crate) version: u32,
    /// Outbox file id: `{id}.{extension}`, `{id}.json`.
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) kind: FileKind,
    /// Route name (`route[N]`).
    pub(crate) route: String,
    /// What the file groups, in hex (tags need not be UTF-8): the tag, the
    /// route name of a per-route file, or `db.table` of a Treasure Data part.
    #[serde(alias = "tag_hex")]
    pub(crate) group_hex: String,
    /// The group for people (lossy).
    #[serde(alias = "tag")]
    pub(crate) group: String,
    /// Period start, seconds since the epoch, UTC (for an `outside` file, the
    /// period it arrived in).
    pub(crate) period_start: i64,
    pub(crate) period_secs: u64,
    #[serde(default)]
    pub(crate) slot: Slot,
    /// Version 1 only: the sequence of a late file (now `slot = late`).
    #[serde(default, skip_serializing)]
    pub(crate) late_seq: Option<u64>,
    /// WAL sequence of the first record with an event in this file.
    pub(crate) first_seq: u64,
    /// The roller had read the WAL through this sequence when it finished the
    /// file: every event of this file's group and slot up to here is in it
    /// (or in an earlier file of the same group and slot).
    pub(crate) covered_through: u64,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    /// Object key per sink name.
    pub(crate) keys: BTreeMap<String, String>,
    /// Wall clock (ms) when the file was finished; for backlog age metrics.
    #[serde(default)]
    pub(crate) finished_at_ms: i64,
    /// The node that made the file (`node_id`); empty in manifests written
    /// before it was recorded.
    #[serde(default)]
    pub(crate) node: String,
    /// A preview's open file: its slot and the WAL sequence it opened at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preview_of: Option<(PreviewSlot, u64)>,
    /// A record sink's part: the file name extension its sink gave it
    /// (absent in parts written before there were other record sinks:
    /// Treasure Data's `msgpack.gz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) part_extension: Option<String>,
}

impl Manifest {
    /// A one-row Parquet file of route "r", tag "t", for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, period_start: i64) -> Manifest {
        Manifest {
            version: 2,
            id: id.into(),
            kind: FileKind::Parquet,
            route: "r".into(),
            group_hex: "74".into(),
            group: "t".into(),
            period_start,
            period_secs: 3600,
            slot: Slot::Main,
            late_seq: None,
            first_seq: 0,
            covered_through: 0,
            rows: 1,
            bytes: 10,
            keys: Default::default(),
            finished_at_ms: 0,
            node: String::new(),
            preview_of: None,
            part_extension: None,
        }
    }

    /// When the file's data begins, for retention and `weir redeliver`: its
    /// period start, or for a Treasure Data part (which has no period) when
    /// it was made.
    pub(crate) fn starts_at(&self) -> i64 {
        match self.kind {
            FileKind::Parquet => self.period_start,
            FileKind::Records => self.finished_at_ms.div_euclid(1000),
        }
    }

    /// The data file's extension: `parquet`, or the part's (only
    /// `[a-z0-9.]` is taken from a manifest on disk, so a damaged one cannot
    /// name a path elsewhere).
    pub(crate) fn extension(&self) -> &str {
        match (self.kind, self.part_extension.as_deref()) {
            (FileKind::Parquet, _) => "parquet",
            (FileKind::Records, Some(ext))
                if !ext.is_empty()
                    && ext
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.') =>
            {
                ext
            }
            (FileKind::Records, _) => "msgpack.gz",
        }
    }

    /// The data file's name in the outbox: `{id}.{extension}`.
    pub(crate) fn data_name(&self) -> String {
        format!("{}.{}", self.id, self.extension())
    }

    /// When the file's data ends (see [`Manifest::starts_at`]).
    pub(crate) fn ends_at(&self) -> i64 {
        match self.kind {
            FileKind::Parquet => self.period_start + self.period_secs as i64,
            FileKind::Records => self.starts_at(),
        }
    }

    /// Reads a manifest, upgrading version 1.
    pub(crate) fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        let mut m: Manifest = serde_json::from_slice(bytes)?;
        if m.version < 2 {
            m.slot = match (m.kind, m.late_seq) {
                (FileKind::Records, _) => Slot::Records,
                (_, Some(_)) => Slot::Late,
                _ => Slot::Main,
            };
        }
        Ok(m)
    }
}

pub(crate) const VERSION: u32 = 2;

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
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
    fn version_1_manifests_are_upgraded() {
        let v1 = br#"{"version":1,"id":"x","kind":"parquet","route":"r","tag_hex":"61","tag":"a",
            "period_start":0,"period_secs":3600,"late_seq":5,"first_seq":5,"covered_through":6,
            "rows":1,"bytes":2,"keys":{}}"#;
        let m = Manifest::from_json(v1).unwrap();
        assert_eq!((m.slot, m.group_hex.as_str()), (Slot::Late, "61"));
    }

    #[test]
    fn treasure_data_parts_of_earlier_builds_stay_readable() {
        let old = br#"{"version":2,"id":"x","kind":"td_part","route":"r","group_hex":"612e62","group":"a.b",
            "period_start":0,"period_secs":3600,"slot":"td","first_seq":5,"covered_through":6,
            "rows":1,"bytes":2,"keys":{"td":"a/b/00"}}"#;
        let m = Manifest::from_json(old).unwrap();
        assert_eq!((m.kind, m.slot), (FileKind::Records, Slot::Records));
        assert_eq!(m.data_name(), "x.msgpack.gz");
        let mut m = m;
        m.part_extension = Some("../../etc".into());
        assert_eq!(
            m.extension(),
            "msgpack.gz",
            "a damaged extension is not a path"
        );
        m.part_extension = Some("fwd.gz".into());
        assert_eq!(m.data_name(), "x.fwd.gz");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(b"a.\xff")).unwrap(), b"a.\xff");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
