//! One Parquet file being written: rows go into Arrow builders, builders go
//! as record batches to the [encoder thread](super::encoder), which encodes
//! them into row groups on disk; finishing writes only the footer, so the
//! period's data is never encoded twice.
//!
//! # Memory
//! Builder rows (up to [`BATCH_ROWS`] or [`BATCH_BYTES`]), batches queued
//! for the encoder, the parquet writer's in-progress row group and column
//! writers, and a fixed cost per open file ([`FILE_OVERHEAD`]: the write
//! buffer and encoder state).
//! [`PartitionWriter::memory`] reports all three so the roller can keep the
//! sum over all open files under `roll.max_buffer_bytes`, however many
//! files are open.

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

use super::encoder::{Encoder, FileEncoding};
use super::json;
use super::schema::RouteSchema;
pub(super) use super::write_error::WriteError;
use crate::msgpack::{Cursor, Head, MsgpackError};
use crate::roll::config::ColumnType;
use crate::sink::ClosedPart;

/// Rows collected before they are handed to the parquet encoder.
pub(super) const BATCH_ROWS: usize = 8192;

/// Builder bytes collected before they are handed to the parquet encoder
/// (large records reach this long before [`BATCH_ROWS`]).
pub(super) const BATCH_BYTES: usize = 4 << 20;

/// The file's write buffer.
const WRITE_BUFFER: usize = 64 << 10;

/// Records larger than this have their JSON size checked before it is
/// built, and leave no buffer that large behind.
const BIG_RECORD: usize = 1 << 20;

/// Memory an open file costs before any row: the write buffer, the column
/// encoders and builders (measured: 10,000 open files of a four-column
/// schema hold about 100 KiB each once they have written a row group).
pub(crate) const FILE_OVERHEAD: usize = WRITE_BUFFER + (96 << 10);

/// The `tag` column: a dictionary of the tags in the current batch.
struct TagColumn {
    keys: Vec<i32>,
    values: Vec<String>,
    index: std::collections::HashMap<Vec<u8>, i32>,
    /// Key of the tag set by [`PartitionWriter::set_tag`] (-1: none yet).
    current: i32,
    current_tag: Vec<u8>,
}

impl TagColumn {
    fn new() -> Self {
        Self {
            keys: Vec::with_capacity(1024),
            values: Vec::new(),
            index: std::collections::HashMap::new(),
            current: -1,
            current_tag: Vec::new(),
        }
    }

    fn set(&mut self, tag: &[u8]) {
        if self.current >= 0 && self.current_tag == tag {
            return;
        }
        self.current_tag.clear();
        self.current_tag.extend_from_slice(tag);
        if let Some(&k) = self.index.get(tag) {
            self.current = k;
            return;
        }
        let k = self.values.len() as i32;
        self.values.push(String::from_utf8_lossy(tag).into_owned());
        self.index.insert(tag.to_vec(), k);
        self.current = k;
    }

    /// The column for the batch; starts the next batch with the current tag.
    fn finish(&mut self) -> Result<ArrayRef, arrow_schema::ArrowError> {
        let keys = Int32Array::from(std::mem::take(&mut self.keys));
        let values = Arc::new(StringArray::from(std::mem::take(&mut self.values)));
        self.index.clear();
        if self.current >= 0 {
            self.current = -1;
            let tag = std::mem::take(&mut self.current_tag);
            self.set(&tag);
        }
        Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
            keys, values,
        )?))
    }
}

/// A msgpack value's type as a log line names it; `None` for nil (a null
/// is no mismatch).
fn type_name(h: Head) -> Option<&'static str> {
    Some(match h {
        Head::Nil => return None,
        Head::Bool(_) => "bool",
        Head::Int(_) | Head::BigUint(_) => "integer",
        Head::Float(_) => "float",
        Head::Str(_) => "string",
        Head::Bin(_) => "binary",
        Head::Array(_) => "array",
        Head::Map(_) => "map",
        Head::Ext(..) => "ext",
    })
}

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
            (Self::Str(b), Head::Str(n) | Head::Bin(n)) => {
                let mut peek = *c;
                peek.head()?;
                match simdutf8::basic::from_utf8(peek.take(n as usize)?) {
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

/// A finished file, closed and synced to disk.
#[derive(Debug, Clone)]
pub struct ClosedFile {
    pub path: PathBuf,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

impl From<ClosedPart> for ClosedFile {
    fn from(p: ClosedPart) -> Self {
        Self {
            path: p.path,
            rows: p.rows,
            bytes: p.bytes,
        }
    }
}

/// Flushes (and with `sync`, syncs) a finished file and describes it.
fn close_file(
    buf: BufWriter<File>,
    path: PathBuf,
    rows: u64,
    sync: bool,
) -> Result<ClosedFile, WriteError> {
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    if sync {
        file.sync_all()?;
    }
    let bytes = file.metadata()?.len();
    Ok(ClosedFile { path, rows, bytes })
}

pub struct PartitionWriter {
    path: PathBuf,
    /// The file's Arrow writers, shared with the encoder thread.
    file: Arc<FileEncoding>,
    encoder: Encoder,
    /// What the writers held at the last batch or flush (refreshed then,
    /// not per row, to keep the encoder's lock off the per-row path).
    writer_memory: usize,
    writer_rows: usize,
    schema: RouteSchema,
    tags: TagColumn,
    times: Vec<i64>,
    columns: Vec<ColumnBuilder>,
    /// Per declared column: values of another type seen (kept in `record`)
    /// since [`PartitionWriter::take_mismatches`], and the last type seen.
    mismatched: Vec<(u64, &'static str)>,
    record: StringBuilder,
    /// Reused per row: the JSON of the remaining keys.
    scratch: String,
    /// Which declared columns the current row has filled.
    filled: Vec<bool>,
    rows: u64,
    builder_bytes: usize,
    /// Whether a second, in-memory Parquet file gets every batch too while
    /// a preview for `roll.freshness` is collected (see [`Self::start_tee`]).
    teeing: bool,
    tee_bytes: usize,
    /// The file's period (µs), for the `period` column.
    period_us: i64,
}

/// A finished in-memory preview file.
pub(crate) struct TeeFile {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rows: u64,
}

impl PartitionWriter {
    /// Creates the file at `path` (truncating a leftover one). Call
    /// [`set_tag`](Self::set_tag) before the first [`append`](Self::append).
    pub fn create(
        path: &Path,
        schema: &RouteSchema,
        encoder: &Encoder,
        period_start: i64,
    ) -> Result<Self, WriteError> {
        let file = File::create(path)?;
        let writer = ArrowWriter::try_new_with_options(
            BufWriter::with_capacity(WRITE_BUFFER, file),
            schema.schema.clone(),
            schema.writer_options(),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            file: FileEncoding::new(writer),
            encoder: encoder.clone(),
            writer_memory: 0,
            writer_rows: 0,
            tags: TagColumn::new(),
            times: Vec::with_capacity(1024),
            columns: schema
                .columns
                .iter()
                .map(|(_, t)| ColumnBuilder::new(*t))
                .collect(),
            mismatched: vec![(0, ""); schema.columns.len()],
            record: StringBuilder::new(),
            scratch: String::with_capacity(1024),
            filled: vec![false; schema.columns.len()],
            rows: 0,
            builder_bytes: 0,
            schema: schema.clone(),
            period_us: period_start.saturating_mul(1_000_000),
            teeing: false,
            tee_bytes: 0,
        })
    }

    /// From now on, rows also go into an in-memory preview file (the rows
    /// appended before are not in it). Rows are built once; only the
    /// Parquet encoding is done twice.
    pub(crate) fn start_tee(&mut self) -> Result<(), WriteError> {
        if !self.teeing {
            self.write_batch_here()?;
            let schema = &self.schema;
            self.file.when_idle(|s| {
                s.tee = Some(ArrowWriter::try_new_with_options(
                    Vec::new(),
                    schema.schema.clone(),
                    schema.writer_options(),
                )?);
                Ok(())
            })?;
            self.teeing = true;
            self.refresh();
        }
        Ok(())
    }

    /// Ends the preview file and returns it (`None` without one).
    pub(crate) fn take_tee(&mut self) -> Result<Option<TeeFile>, WriteError> {
        if !self.teeing {
            return Ok(None);
        }
        self.write_batch_here()?;
        self.teeing = false;
        let tee = self.file.when_idle(|s| Ok(s.tee.take()))?;
        self.refresh();
        let Some(tee) = tee else {
            return Ok(None);
        };
        let rows = tee
            .flushed_row_groups()
            .iter()
            .map(|g| g.num_rows())
            .sum::<i64>()
            + tee.in_progress_rows() as i64;
        let bytes = tee.into_inner()?;
        Ok(Some(TeeFile {
            bytes,
            rows: rows.max(0) as u64,
        }))
    }

    /// Reads what the writers hold now (for [`Self::memory`]).
    fn refresh(&mut self) {
        let s = self.file.lock();
        self.writer_memory = s.memory();
        self.writer_rows = s.buffered_rows();
        self.tee_bytes = s.tee_bytes();
    }

    /// The tag of the events appended from now on.
    pub fn set_tag(&mut self, tag: &[u8]) {
        self.tags.set(tag);
    }

    /// Adds one event. `record` is a msgpack map (checked by the decoder).
    ///
    /// # Errors
    /// `WriteError::BadRecord`: the record bytes are not a valid map;
    /// nothing is added then. Others: the file cannot be written.
    pub fn append(&mut self, time_ns: i64, record: &[u8]) -> Result<(), WriteError> {
        if self.tags.current < 0 {
            self.tags.set(b"");
        }
        // Builders hold under BATCH_BYTES before a row, and a row is at most
        // a few times forward.max_decompressed_bytes: the record column's
        // 32-bit offsets cannot overflow.
        let declared = self.encode_record(record).map_err(WriteError::BadRecord)?;
        self.times
            .push(time_ns.div_euclid(self.schema.time_divisor));
        self.tags.keys.push(self.tags.current);
        self.record.append_value(&self.scratch);
        self.builder_bytes += self.scratch.len() + declared + 28;
        // One huge record must not leave its JSON buffer behind.
        if self.scratch.capacity() > BIG_RECORD {
            self.scratch = String::with_capacity(1024);
        }
        self.rows += 1;
        if self.times.len() >= BATCH_ROWS || self.builder_bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Values of a declared column's name but another type seen since the
    /// last call: (column index, count, the last type seen).
    pub(crate) fn take_mismatches(
        &mut self,
    ) -> impl Iterator<Item = (usize, u64, &'static str)> + '_ {
        self.mismatched
            .iter_mut()
            .enumerate()
            .filter(|(_, m)| m.0 > 0)
            .map(|(i, m)| {
                let (n, seen) = std::mem::take(m);
                (i, n, seen)
            })
    }

    /// Fills the declared columns and `scratch` (the `record` JSON) for one
    /// record; returns the bytes it added to the declared columns.
    fn encode_record(&mut self, record: &[u8]) -> Result<usize, MsgpackError> {
        let mut c = Cursor::new(record);
        let Head::Map(n) = c.head()? else {
            return Err(MsgpackError::Truncated);
        };
        self.scratch.clear();
        self.filled.fill(false);
        // On a bad record nothing may be left half-appended to the column
        // builders, so check structure before touching them.
        crate::msgpack::object_len(record)?;
        if record.len() > BIG_RECORD
            && json::json_len(&mut Cursor::new(record))? > record.len() * 3 + 4096
        {
            // Mostly control characters or invalid UTF-8: its JSON would be
            // up to six times its size. Stored losslessly and compactly.
            self.scratch.push_str("{\"$msgpack\":\"");
            base64::Engine::encode_string(
                &base64::engine::general_purpose::STANDARD,
                record,
                &mut self.scratch,
            );
            self.scratch.push_str("\"}");
            for col in &mut self.columns {
                col.append_null();
            }
            return Ok(0);
        }
        self.scratch.push('{');
        let mut first = true;
        let mut declared = 0;
        for _ in 0..n {
            let key_start = c;
            if let Some(k) = c.bytes()? {
                if let Some(i) = self
                    .schema
                    .columns
                    .iter()
                    .position(|(name, _)| name.as_bytes() == k)
                {
                    let at = c.remaining().len();
                    if !self.filled[i] {
                        if self.columns[i].try_append(&mut c)? {
                            self.filled[i] = true;
                            declared += at - c.remaining().len();
                            continue;
                        }
                        // A value of another type stays in `record`.
                        if let Some(seen) = type_name(c.peek()?) {
                            let m = &mut self.mismatched[i];
                            m.0 += 1;
                            m.1 = seen;
                        }
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
        Ok(declared)
    }

    /// Hands the builders' rows to the encoder thread.
    fn write_batch(&mut self) -> Result<(), WriteError> {
        if let Some((batch, bytes)) = self.take_batch()? {
            self.encoder.send(&self.file, batch, bytes)?;
            self.refresh();
        }
        Ok(())
    }

    /// Encodes the builders' rows on this thread, after the file's queued
    /// batches: for the points where the roller waits for the file anyway
    /// (flush, preview, footer), so a small file never waits on the
    /// encoder thread, whatever the machine's load.
    fn write_batch_here(&mut self) -> Result<(), WriteError> {
        if let Some((batch, _)) = self.take_batch()? {
            self.file.when_idle(|s| {
                if let Some(w) = s.writer.as_mut() {
                    w.write(&batch)?;
                }
                if let Some(t) = s.tee.as_mut() {
                    t.write(&batch)?;
                }
                Ok(())
            })?;
            self.refresh();
        }
        Ok(())
    }

    /// The builders' rows as a record batch, and the bytes they took.
    fn take_batch(&mut self) -> Result<Option<(RecordBatch, usize)>, WriteError> {
        let n = self.times.len();
        if n == 0 {
            return Ok(None);
        }
        let times = std::mem::take(&mut self.times);
        let time: ArrayRef = if self.schema.time_divisor == 1 {
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC"))
        } else {
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))
        };
        let tag = self.tags.finish()?;
        let mut arrays = vec![time, tag];
        arrays.extend(self.columns.iter_mut().map(ColumnBuilder::finish));
        if self.schema.period {
            let period = TimestampMicrosecondArray::from(vec![self.period_us; n]);
            arrays.push(Arc::new(period.with_timezone("UTC")));
        }
        arrays.push(Arc::new(self.record.finish()));
        let batch = RecordBatch::try_new(self.schema.schema.clone(), arrays)?;
        let bytes = std::mem::take(&mut self.builder_bytes);
        self.times = Vec::with_capacity(BATCH_ROWS.min(n * 2));
        Ok(Some((batch, bytes)))
    }

    /// Bytes held in memory for this file: builders, the open row group and
    /// [`FILE_OVERHEAD`].
    pub(crate) fn memory(&self) -> usize {
        FILE_OVERHEAD + self.buffered_bytes()
    }

    /// Bytes of rows not yet in a row group on disk (what a flush frees).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.builder_bytes + self.writer_memory
    }

    /// Bytes the preview file holds in memory (encoded and in progress).
    pub(crate) fn tee_bytes(&self) -> usize {
        self.tee_bytes
    }

    /// Rows held in memory (builders plus the open row group).
    pub(crate) fn buffered_rows(&self) -> usize {
        self.times.len() + self.writer_rows
    }

    /// Writes buffered rows out as a row group, releasing their memory.
    pub(crate) fn flush_row_group(&mut self) -> Result<(), WriteError> {
        self.write_batch_here()?;
        self.file.when_idle(|s| {
            if let Some(w) = s.writer.as_mut() {
                w.flush()?;
            }
            Ok(())
        })?;
        self.refresh();
        Ok(())
    }

    /// Writes the footer and syncs the file.
    pub fn finish(self) -> Result<ClosedFile, WriteError> {
        self.close(true)
    }

    /// Writes the footer without syncing: for files finished in a group,
    /// whose data is made durable at once by one file-system sync.
    pub(crate) fn finish_unsynced(self) -> Result<ClosedFile, WriteError> {
        self.close(false)
    }

    fn close(mut self, sync: bool) -> Result<ClosedFile, WriteError> {
        self.write_batch_here()?;
        let writer = self.file.when_idle(|s| {
            s.writer
                .take()
                .ok_or_else(|| WriteError::Io(std::io::Error::other("file already finished")))
        })?;
        close_file(writer.into_inner()?, self.path.clone(), self.rows, sync)
    }
}

impl Drop for PartitionWriter {
    /// A file dropped unfinished (discarded to be rebuilt from the WAL)
    /// must not be written by the encoder once its path is reused.
    fn drop(&mut self) {
        drop(self.file.wait_idle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Large records fill a batch by bytes long before BATCH_ROWS; declared
    /// columns must stay aligned with the rest across those batches.
    #[test]
    fn batches_cut_by_bytes_keep_columns_aligned() {
        let (_dir, mut w) = writer("n='int64'");
        let pad = "x".repeat(100_000);
        for i in 0..100i64 {
            let mut rec = Vec::new();
            rmp::encode::write_map_len(&mut rec, 2).unwrap();
            rmp::encode::write_str(&mut rec, "n").unwrap();
            rmp::encode::write_sint(&mut rec, i).unwrap();
            rmp::encode::write_str(&mut rec, "pad").unwrap();
            rmp::encode::write_str(&mut rec, &pad).unwrap();
            w.append(i * 1_000, &rec).unwrap();
        }
        let closed = w.finish().unwrap();
        assert_eq!(closed.rows, 100);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&closed.path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut n = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let col = b.column_by_name("n").unwrap();
            let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
            n.extend((0..col.len()).map(|i| col.value(i)));
        }
        assert_eq!(n, (0..100).collect::<Vec<_>>());
    }

    fn writer(columns: &str) -> (tempfile::TempDir, PartitionWriter) {
        let cfg = crate::config::Config::from_str(
            &format!("node_id='n'\n[[route]]\nmatch='**'\ncolumns={{{columns}}}\n"),
            "t",
        )
        .unwrap();
        let schema = RouteSchema::new(&cfg.routes[0], &cfg.roll, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let encoder = Encoder::start().unwrap();
        let mut w =
            PartitionWriter::create(&dir.path().join("f.parquet"), &schema, &encoder, 0).unwrap();
        w.set_tag(b"t");
        (dir, w)
    }

    fn record_with(key: &str, value: &[u8]) -> Vec<u8> {
        let mut rec = Vec::new();
        rmp::encode::write_map_len(&mut rec, 1).unwrap();
        rmp::encode::write_str(&mut rec, key).unwrap();
        rmp::encode::write_str_len(&mut rec, value.len() as u32).unwrap();
        rec.extend_from_slice(value);
        rec
    }

    /// Strings taken into a declared column count in the file's memory,
    /// so the roller's budget sees them (and batches stay small).
    #[test]
    fn declared_column_strings_count_in_memory() {
        let (_d, mut w) = writer("path='string'");
        let rec = record_with("path", &vec![b'p'; 100_000]);
        for i in 0..30 {
            w.append(i, &rec).unwrap();
        }
        assert!(w.buffered_bytes() >= 2_000_000, "{}", w.buffered_bytes());
        for i in 0..100 {
            w.append(i, &rec).unwrap();
        }
        // Past BATCH_BYTES the builders went to the encoder.
        assert!(w.builder_bytes < BATCH_BYTES, "{}", w.builder_bytes);
    }

    /// A record whose JSON would be six times its size (control
    /// characters) is kept as base64 msgpack, and leaves no big buffer.
    #[test]
    fn a_record_of_control_characters_is_stored_compactly() {
        let (_d, mut w) = writer("n='int64'");
        let rec = record_with("msg", &vec![0x01; 3 << 20]);
        w.append(1, &rec).unwrap();
        assert!(w.scratch.capacity() <= BIG_RECORD);
        assert!(w.builder_bytes < 5 << 20, "{}", w.builder_bytes);
        let closed = w.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&closed.path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let b = reader.into_iter().next().unwrap().unwrap();
        let col = b.column_by_name("record").unwrap();
        let col = col
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(col.value(0)).unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["$msgpack"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, rec);
    }
}
