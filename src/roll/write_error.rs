//! Why writing a file or part failed: the roller tells a bad record (the
//! event is skipped) from a failing disk (retried after a rebuild).

use parquet::errors::ParquetError;

use crate::msgpack::MsgpackError;
use crate::sink::PartError;

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// One record is not a valid msgpack map (the event is skipped).
    #[error("record is not a valid msgpack map: {0}")]
    BadRecord(MsgpackError),
    /// A test failpoint (`WEIR_FAILPOINTS=roll.fail_tag=TAG`).
    #[error("failpoint roll.fail_tag")]
    Injected,
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<PartError> for WriteError {
    fn from(e: PartError) -> Self {
        match e {
            PartError::BadRecord(e) => WriteError::BadRecord(e),
            PartError::Io(e) => WriteError::Io(e),
        }
    }
}
