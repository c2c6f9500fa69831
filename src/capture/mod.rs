//! Recording forward traffic for replay: the capture file format
//! (`proto/capture.md`), a writer that never slows ingestion, and the
//! `weir capture` proxy. `weir replay` ([`crate::replay::playback`]) reads
//! the files back.

pub mod format;
pub mod proxy;
pub(crate) mod writer;
