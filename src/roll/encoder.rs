//! The Parquet encoder thread: the roller builds record batches (declared
//! columns and the JSON `record` column) and this thread encodes and
//! compresses them into their files, so the two halves of rolling run on
//! two cores when there is a backlog.
//!
//! Each open file's Arrow writers live in a [`FileEncoding`] shared with
//! the encoder. Batches are encoded in the order they were sent, one queue
//! for all files; the roller touches a file's writers itself (row group
//! flush, preview, footer, and the rows still in the builders then) only
//! once its queued batches are done ([`FileEncoding::when_idle`]), so a
//! small file never waits on this thread.
//!
//! # Memory
//! At most [`QUEUE`] batches wait for the encoder (plus the one it is
//! encoding); until it is encoded a batch stays counted in its file's
//! memory, so `roll.max_buffer_bytes` still bounds the total. When the
//! queue is full the roller waits: encoding is then the pace of rolling.

use std::fs::File;
use std::io::BufWriter;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use super::write_error::WriteError;

/// Batches waiting for the encoder, over all files.
const QUEUE: usize = 2;

/// Handle to the encoder thread; the thread ends when the last handle
/// (and every file's queued batch) is gone.
#[derive(Clone)]
pub struct Encoder {
    jobs: SyncSender<Job>,
}

struct Job {
    file: Arc<FileEncoding>,
    batch: RecordBatch,
    bytes: usize,
}

impl Encoder {
    /// Starts the encoder thread (at the roller's priority, behind acks).
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("weir-encoder".into())
            .spawn(move || {
                crate::priority::run_behind_acks();
                encode_all(queue);
            })?;
        Ok(Self { jobs })
    }

    /// Queues `batch` (whose rows took `bytes` in the builders) for `file`.
    /// Waits while the queue is full.
    pub(crate) fn send(
        &self,
        file: &Arc<FileEncoding>,
        batch: RecordBatch,
        bytes: usize,
    ) -> Result<(), WriteError> {
        {
            let mut s = file.lock();
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            s.pending += 1;
            s.pending_bytes += bytes;
            s.pending_rows += batch.num_rows();
        }
        let job = Job {
            file: file.clone(),
            batch,
            bytes,
        };
        if let Err(e) = self.jobs.send(job) {
            // Only if the encoder thread is gone: undo and report.
            file.done(&e.0, Ok(()));
            return Err(encoder_gone());
        }
        Ok(())
    }
}

fn encoder_gone() -> WriteError {
    WriteError::Io(std::io::Error::other("the parquet encoder thread stopped"))
}

fn encode_all(queue: Receiver<Job>) {
    for job in queue {
        let (mut writer, mut tee, failed) = {
            let mut s = job.file.lock();
            (s.writer.take(), s.tee.take(), s.error.is_some())
        };
        let result = if failed {
            // The file is broken already; the roller discards it.
            Ok(())
        } else {
            std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), WriteError> {
                if let Some(w) = writer.as_mut() {
                    w.write(&job.batch)?;
                }
                if let Some(t) = tee.as_mut() {
                    t.write(&job.batch)?;
                }
                Ok(())
            }))
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(WriteError::Parquet(ParquetError::General(format!(
                    "encoder panicked: {why}"
                ))))
            })
        };
        {
            let mut s = job.file.lock();
            s.writer = writer;
            s.tee = tee;
        }
        job.file.done(&job, result);
    }
}

/// One open file's writers and what the encoder has not done yet.
pub(crate) struct FileEncoding {
    state: Mutex<EncodingState>,
    idle: Condvar,
}

pub(crate) struct EncodingState {
    /// The file (taken by the encoder while it encodes a batch).
    pub(crate) writer: Option<ArrowWriter<BufWriter<File>>>,
    /// The in-memory preview file, while one is collected.
    pub(crate) tee: Option<ArrowWriter<Vec<u8>>>,
    /// The first error encoding a batch (reported once).
    error: Option<WriteError>,
    pending: usize,
    pending_bytes: usize,
    pending_rows: usize,
}

impl EncodingState {
    /// Memory the writers hold: batches not yet encoded, the open row
    /// group and the preview file.
    pub(crate) fn memory(&self) -> usize {
        self.pending_bytes
            + self
                .writer
                .as_ref()
                .map_or(0, |w| w.memory_size().max(w.in_progress_size()))
            + self.tee_bytes()
    }

    /// Bytes the preview file holds (encoded and in progress).
    pub(crate) fn tee_bytes(&self) -> usize {
        self.tee.as_ref().map_or(0, |t| {
            t.inner().len() + t.memory_size().max(t.in_progress_size())
        })
    }

    /// Rows queued or in the open row group.
    pub(crate) fn buffered_rows(&self) -> usize {
        self.pending_rows + self.writer.as_ref().map_or(0, |w| w.in_progress_rows())
    }
}

impl FileEncoding {
    pub(crate) fn new(writer: ArrowWriter<BufWriter<File>>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(EncodingState {
                writer: Some(writer),
                tee: None,
                error: None,
                pending: 0,
                pending_bytes: 0,
                pending_rows: 0,
            }),
            idle: Condvar::new(),
        })
    }

    /// The state as it is now (queued batches may still be encoding).
    pub(crate) fn lock(&self) -> MutexGuard<'_, EncodingState> {
        // Nothing panics while holding the lock; a poisoned one is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every queued batch of this file is encoded, then runs
    /// `f` with the writers; an encoding error is returned instead.
    pub(crate) fn when_idle<T>(
        &self,
        f: impl FnOnce(&mut EncodingState) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        let mut s = self.wait_idle();
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        f(&mut s)
    }

    /// Waits until every queued batch of this file is encoded.
    pub(crate) fn wait_idle(&self) -> MutexGuard<'_, EncodingState> {
        let mut s = self.lock();
        while s.pending > 0 {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s
    }

    fn done(&self, job: &Job, result: Result<(), WriteError>) {
        let mut s = self.lock();
        s.pending -= 1;
        s.pending_bytes -= job.bytes;
        s.pending_rows -= job.batch.num_rows();
        if let Err(e) = result {
            s.error.get_or_insert(e);
        }
        drop(s);
        self.idle.notify_all();
    }
}
