//! What the roller needs to write forward parts: one open part per sink
//! (every tag in it: sending makes one PackedForward message per tag) and
//! the part's id.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::ForwardSinkConfig;
use super::part::{ForwardPartWriter, OutTag};
use crate::sink::records::{PartError, RecordPart, RecordSink};

/// Memory one open part holds: its write buffer and a tag.
const PART_MEMORY: usize = 80 << 10;

/// The group of every event: a sink has one open part at a time.
pub(crate) const GROUP: &str = "*";

/// One forward sink as the roller sees it.
pub(crate) struct ForwardRecords {
    name: String,
    cfg: ForwardSinkConfig,
}

impl ForwardRecords {
    pub(crate) fn new(name: &str, cfg: &ForwardSinkConfig) -> Self {
        Self {
            name: name.to_string(),
            cfg: cfg.clone(),
        }
    }
}

impl RecordSink for ForwardRecords {
    fn name(&self) -> &str {
        &self.name
    }

    fn group(&self, _tag: &[u8]) -> Arc<str> {
        GROUP.into()
    }

    fn flush_interval(&self) -> Duration {
        self.cfg.flush_interval.0
    }

    fn max_part_bytes(&self) -> usize {
        self.cfg.max_chunk_bytes.as_usize()
    }

    fn part_memory(&self) -> usize {
        PART_MEMORY
    }

    fn extension(&self) -> &'static str {
        "fwd"
    }

    fn part_label(&self) -> &'static str {
        "forward_chunk"
    }

    fn create_part(&self, path: &Path) -> Result<Box<dyn RecordPart>, PartError> {
        let tags = OutTag::new(self.cfg.tag.as_deref(), &self.cfg.tag_prefix);
        Ok(Box::new(ForwardPartWriter::create(path, tags)?))
    }

    /// [`super::chunk::key`]: the part's id is derived from the node, this
    /// start's random id, the sink and the part's first WAL sequence (each
    /// tag's chunk id from it and the tag). A finished part keeps its key
    /// in its manifest, so sent again after any crash it carries the same
    /// ids and a de-duplicating server (weir) stores it once; a part made
    /// by a later start never reuses an id, whatever happened to the
    /// data_dir (lost, restored from a snapshot, cloned with its node_id).
    fn part_key(&self, node: &str, run: &str, group: &str, first_seq: u64, rows: u64) -> String {
        let id = crate::ids::digest(&[
            b"forward",
            node.as_bytes(),
            run.as_bytes(),
            self.name.as_bytes(),
            group.as_bytes(),
            &first_seq.to_le_bytes(),
        ]);
        let mut part = [0u8; 16];
        part.copy_from_slice(&id[..16]);
        super::chunk::key(&part, rows, group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ids_differ_between_runs() {
        let cfg: ForwardSinkConfig = toml::from_str("servers = [{ address = \"h:1\" }]").unwrap();
        let r = ForwardRecords::new("fwd", &cfg);
        let a = r.part_key("n1", "wal-a", GROUP, 0, 5);
        assert_eq!(
            a,
            r.part_key("n1", "wal-a", GROUP, 0, 5),
            "the same part, the same id"
        );
        assert_ne!(
            a.split('/').next(),
            r.part_key("n1", "wal-b", GROUP, 0, 5).split('/').next(),
            "a later run's first part is not an earlier one's resend"
        );
    }
}
