//! One Parquet file being written: rows go into Arrow builders, builders go
//! into row groups on disk, and finishing writes only the footer, so the
//! period's data is never encoded twice.
//!
//! # Memory
//! Builder rows (up to [`BATCH_ROWS`]) plus the parquet writer's in-progress
//! row group. [`PartitionWriter::memory`] reports both so the roller can keep
//! the sum over all open files under `roll.max_buffer_bytes`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow_array::{TimestampMicrosecondArray, TimestampNanosecondArray};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use super::json;
use super::schema::RouteSchema;
use crate::config::ColumnType;
use crate::msgpack::{Cursor, Head, MsgpackError};

/// Rows collected before they are handed to the parquet encoder.
pub const BATCH_ROWS: usize = 8192;

enum ColumnBuilder {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::String => Self::Str(StringBuilder::new()),
            ColumnType::Int32 => Self::I32(Int32Builder::new()),
            ColumnType::Int64 => Self::I64(Int64Builder::new()),
            ColumnType::Float64 => Self::F64(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Str(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
        }
    }

    /// Takes the value at `c` if it has this column's type; otherwise leaves
    /// `c` where it was and returns false.
    fn try_append(&mut self, c: &mut Cursor<'_>) -> Result<bool, MsgpackError> {
        let head = c.peek()?;
        let ok = match (self, head) {
            (Self::I32(b), Head::Int(i)) => match i32::try_from(i) {
                Ok(v) => {
                    b.append_value(v);
                    true
                }
                Err(_) => false,
            },
            (Self::I64(b), Head::Int(i)) => {
                b.append_value(i);
                true
            }
            (Self::F64(b), Head::Float(f)) => {
                b.append_value(f);
                true
            }
            (Self::F64(b), Head::Int(i)) => {
                b.append_value(i as f64);
                true
            }
            (Self::Bool(b), Head::Bool(v)) => {
                b.append_value(v);
                true
            }
            (Self::Str(b), Head::Str(n)) => {
                let mut peek = *c;
                peek.head()?;
                match std::str::from_utf8(peek.take(n as usize)?) {
                    Ok(s) => {
                        b.append_value(s);
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if ok {
            c.skip()?;
        }
        Ok(ok)
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Str(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A finished file, closed and synced to disk.
#[derive(Debug, Clone)]
pub struct ClosedFile {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// Flushes and syncs a finished file and describes it.
pub fn close_file(
    buf: BufWriter<File>,
    path: PathBuf,
    rows: u64,
) -> Result<ClosedFile, WriteError> {
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    Ok(ClosedFile { path, rows, bytes })
}

pub struct PartitionWriter {
    path: PathBuf,
    writer: ArrowWriter<BufWriter<File>>,
    schema: RouteSchema,
    tag_value: Arc<StringArray>,
    times: Vec<i64>,
    columns: Vec<ColumnBuilder>,
    record: StringBuilder,
    /// Reused per row: the JSON of the remaining keys.
    scratch: String,
    /// Which declared columns the current row has filled.
    filled: Vec<bool>,
    rows: u64,
    builder_bytes: usize,
}

impl PartitionWriter {
    /// Creates the file at `path` (truncating a leftover one).
    pub fn create(path: &Path, schema: &RouteSchema, tag: &[u8]) -> Result<Self, WriteError> {
        let file = File::create(path)?;
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            schema.schema.clone(),
            Some((*schema.props).clone()),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            tag_value: Arc::new(StringArray::from(vec![
                String::from_utf8_lossy(tag).into_owned()
            ])),
            times: Vec::with_capacity(1024),
            columns: schema
                .columns
                .iter()
                .map(|(_, t)| ColumnBuilder::new(*t))
                .collect(),
            record: StringBuilder::new(),
            scratch: String::with_capacity(1024),
            filled: vec![false; schema.columns.len()],
            rows: 0,
            builder_bytes: 0,
            schema: schema.clone(),
        })
    }

    /// Adds one event. `record` is a msgpack map (checked by the decoder).
    ///
    /// # Errors
    /// The record bytes are not a valid map; nothing is added then.
    pub fn append(&mut self, time_ns: i64, record: &[u8]) -> Result<(), WriteError> {
        self.encode_record(record)
            .map_err(|e| WriteError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        self.times
            .push(time_ns.div_euclid(self.schema.time_divisor));
        self.record.append_value(&self.scratch);
        self.builder_bytes += self.scratch.len() + 24;
        self.rows += 1;
        if self.times.len() >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn encode_record(&mut self, record: &[u8]) -> Result<(), MsgpackError> {
        let mut c = Cursor::new(record);
        let Head::Map(n) = c.head()? else {
            return Err(MsgpackError::Truncated);
        };
        self.scratch.clear();
        self.scratch.push('{');
        self.filled.fill(false);
        let mut first = true;
        // On a bad record nothing may be left half-appended to the column
        // builders, so check structure before touching them.
        crate::msgpack::object_len(record)?;
        for _ in 0..n {
            let key_start = c;
            if let Some(k) = c.bytes()? {
                if let Some(i) = self
                    .schema
                    .columns
                    .iter()
                    .position(|(name, _)| name.as_bytes() == k)
                {
                    if !self.filled[i] && self.columns[i].try_append(&mut c)? {
                        self.filled[i] = true;
                        continue;
                    }
                }
            }
            c = key_start;
            if !first {
                self.scratch.push(',');
            }
            first = false;
            json::write_key(&mut self.scratch, &mut c)?;
            self.scratch.push(':');
            json::write_value(&mut self.scratch, &mut c)?;
        }
        self.scratch.push('}');
        for (i, filled) in self.filled.iter().enumerate() {
            if !filled {
                self.columns[i].append_null();
            }
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), WriteError> {
        let n = self.times.len();
        if n == 0 {
            return Ok(());
        }
        let times = std::mem::take(&mut self.times);
        let time: ArrayRef = if self.schema.time_divisor == 1 {
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC"))
        } else {
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))
        };
        let tag: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![0; n]),
            self.tag_value.clone(),
        )?);
        let mut arrays = vec![time, tag];
        arrays.extend(self.columns.iter_mut().map(ColumnBuilder::finish));
        arrays.push(Arc::new(self.record.finish()));
        let batch = RecordBatch::try_new(self.schema.schema.clone(), arrays)?;
        self.writer.write(&batch)?;
        self.builder_bytes = 0;
        self.times = Vec::with_capacity(BATCH_ROWS.min(n * 2));
        Ok(())
    }

    /// Bytes held in memory for this file (builders plus the open row group).
    pub fn memory(&self) -> usize {
        self.builder_bytes + self.writer.in_progress_size()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows held in memory (builders plus the open row group).
    pub fn buffered_rows(&self) -> usize {
        self.times.len() + self.writer.in_progress_rows()
    }

    /// Writes buffered rows out as a row group, releasing their memory.
    pub fn flush_row_group(&mut self) -> Result<(), WriteError> {
        self.write_batch()?;
        self.writer.flush()?;
        Ok(())
    }

    /// Writes the footer and syncs the file.
    pub fn finish(mut self) -> Result<ClosedFile, WriteError> {
        self.write_batch()?;
        close_file(self.writer.into_inner()?, self.path, self.rows)
    }
}
