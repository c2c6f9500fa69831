//! Recorded forward traffic: the capture file format (`proto/capture.md`)
//! and a writer that never slows what it records. The forward input tees
//! into it (`[forward] capture_dir`), the `weir capture` proxy
//! ([`crate::tools::capture`]) records through it, the roller quarantines
//! records in it, and `weir replay` reads it.

pub mod format;
pub(crate) mod writer;
pub(crate) use format::{encode_header, write_record, Kind, Reader, Record};
pub(crate) use writer::{Capture, Target, Writer};
