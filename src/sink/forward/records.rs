//! What the roller needs to write forward chunks: the tag a record goes out
//! under (one chunk per tag: PackedForward carries one tag), the chunk
//! format ([`ForwardPartWriter`]) and the chunk's id.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Compress, ForwardSinkConfig};
use super::part::ForwardPartWriter;
use crate::sink::records::{PartError, RecordPart, RecordSink};

/// Memory one open chunk holds: the write buffer, and with gzip the deflate
/// state (about 256 KiB).
const PLAIN_MEMORY: usize = 80 << 10;
const GZIP_MEMORY: usize = 352 << 10;

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

    /// The tag it goes out under: `tag`, or `tag_prefix` + its own.
    fn group(&self, tag: &[u8]) -> Arc<str> {
        match &self.cfg.tag {
            Some(t) => t.as_str().into(),
            None => format!("{}{}", self.cfg.tag_prefix, String::from_utf8_lossy(tag)).into(),
        }
    }

    fn flush_interval(&self) -> Duration {
        self.cfg.flush_interval.0
    }

    fn max_part_bytes(&self) -> usize {
        self.cfg.max_chunk_bytes.as_usize()
    }

    fn part_memory(&self) -> usize {
        match self.cfg.compress {
            Compress::None => PLAIN_MEMORY,
            Compress::Gzip => GZIP_MEMORY,
        }
    }

    fn extension(&self) -> &'static str {
        match self.cfg.compress {
            Compress::None => "fwd",
            Compress::Gzip => "fwd.gz",
        }
    }

    fn part_label(&self) -> &'static str {
        "forward_chunk"
    }

    fn create_part(&self, path: &Path) -> Result<Box<dyn RecordPart>, PartError> {
        let gzip = self.cfg.compress == Compress::Gzip;
        Ok(Box::new(ForwardPartWriter::create(path, gzip)?))
    }

    /// [`super::chunk::key`]: the chunk id is derived from the node, sink,
    /// tag and the chunk's first WAL sequence, so the chunk sent again after
    /// any crash carries the same id and a de-duplicating server (weir)
    /// stores it once.
    fn part_key(&self, node: &str, group: &str, first_seq: u64, rows: u64) -> String {
        let id = crate::ids::digest(&[
            b"forward",
            node.as_bytes(),
            self.name.as_bytes(),
            group.as_bytes(),
            &first_seq.to_le_bytes(),
        ]);
        let mut chunk = [0u8; 16];
        chunk.copy_from_slice(&id[..16]);
        super::chunk::key(&chunk, rows, group)
    }
}
