//! What the roller needs to write Treasure Data parts: tags to `db.table`,
//! the part format ([`TdPartWriter`]) and the part's unique id.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::TdSinkConfig;
use super::part::TdPartWriter;
use crate::sink::records::{PartError, RecordPart, RecordSink};

/// Memory one open part holds: the gzip state (about 256 KiB for deflate's
/// window and tables), the write buffer and the scratch record.
const PART_MEMORY: usize = 320 << 10;

/// One TD sink as the roller sees it.
pub(crate) struct TdRecords {
    name: String,
    cfg: TdSinkConfig,
}

impl TdRecords {
    pub(crate) fn new(name: &str, cfg: &TdSinkConfig) -> Self {
        Self {
            name: name.to_string(),
            cfg: cfg.clone(),
        }
    }
}

impl RecordSink for TdRecords {
    fn name(&self) -> &str {
        &self.name
    }

    fn group(&self, tag: &[u8]) -> Arc<str> {
        let (db, table) = super::names_for(tag, &self.cfg);
        format!("{db}.{table}").into()
    }

    fn flush_interval(&self) -> Duration {
        self.cfg.flush_interval.0
    }

    fn max_part_bytes(&self) -> usize {
        self.cfg.max_part_bytes.as_usize()
    }

    fn part_memory(&self) -> usize {
        PART_MEMORY
    }

    fn extension(&self) -> &'static str {
        "msgpack.gz"
    }

    fn part_label(&self) -> &'static str {
        "td_part"
    }

    fn create_part(&self, path: &Path) -> Result<Box<dyn RecordPart>, PartError> {
        Ok(Box::new(TdPartWriter::create(path)?))
    }

    /// `{db}/{table}/{unique_id}`; the id is derived from the node, sink,
    /// table and the part's first WAL sequence, so TD keeps one copy of a
    /// part uploaded again after a crash.
    /// The run id is left out: Treasure Data's unique ids stay what they
    /// were before it existed (pinned by a test).
    fn part_key(&self, node: &str, _run: &str, group: &str, first_seq: u64, _rows: u64) -> String {
        let unique_id = crate::ids::stable_hex(
            &[
                b"td",
                node.as_bytes(),
                self.name.as_bytes(),
                group.as_bytes(),
                &first_seq.to_le_bytes(),
            ],
            16,
        );
        let (db, table) = group.split_once('.').unwrap_or((group, ""));
        format!("{db}/{table}/{unique_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Treasure Data keeps one copy per unique id: a part resent after an
    /// upgrade must carry the id it had. Pinned.
    #[test]
    fn keys_and_unique_ids_are_pinned() {
        let cfg: TdSinkConfig = toml::from_str("apikey = \"k\"").unwrap();
        let td = TdRecords::new("td", &cfg);
        let group = td.group(b"app.web.access");
        assert_eq!(&*group, "web.access");
        assert_eq!(
            td.part_key("node-1", "w1", &group, 42, 7),
            td.part_key("node-1", "w2", &group, 42, 9999),
            "neither the row count nor the run id is part of a TD key"
        );
        assert_eq!(
            td.part_key("node-1", "w1", &group, 42, 7),
            "web/access/839989de5fafac3e1eb93f7c32d7fe09"
        );
    }
}
