//! Failures: a record or tick that fails is retried after a rebuild from
//! the WAL (a disk error, with backoff) or quarantined (a cause in the data).

use super::*;

/// Longest pause between retries after a disk error.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Something went wrong handling a record or a tick.
#[derive(Debug)]
pub(super) enum Failure {
    /// Appending the record's own events failed.
    Record(WriteError),
    /// Finishing, flushing or creating a file failed.
    File(WriteError),
    /// Processing panicked.
    Panic(String),
}

impl Failure {
    /// Whether the cause lies in this record's data (or a bug it triggers)
    /// rather than in the disk.
    pub(super) fn blames_record(&self) -> bool {
        match self {
            Failure::Record(e) => io_error(e).is_none(),
            Failure::Panic(_) => true,
            Failure::File(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Record(e) | Failure::File(e) => write!(f, "{e}"),
            Failure::Panic(m) => write!(f, "panic: {m}"),
        }
    }
}

/// The I/O error behind a write error, if it is one.
fn io_error(e: &WriteError) -> Option<&std::io::Error> {
    match e {
        WriteError::Io(e) => Some(e),
        WriteError::Parquet(parquet::errors::ParquetError::External(b)) => b.downcast_ref(),
        WriteError::Arrow(arrow_schema::ArrowError::IoError(_, e)) => Some(e),
        _ => None,
    }
}

/// Why a rebuild from the WAL stopped.
pub(super) enum RebuildError {
    Io(std::io::Error),
    Failed(Failure, Box<WalRecord>),
}

impl From<std::io::Error> for RebuildError {
    fn from(e: std::io::Error) -> Self {
        RebuildError::Io(e)
    }
}

impl Roller {
    /// Processes a record; a panic becomes a [`Failure`].
    pub(super) fn process_guarded(&mut self, r: &WalRecord) -> Result<(), Failure> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.on_record(r))) {
            Ok(result) => result,
            Err(panic) => Err(Failure::Panic(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into()),
            )),
        }
    }

    /// After a failure: quarantine the record if it is to blame, else wait
    /// (a disk error); then throw away the open files and rebuild them from
    /// the WAL through `through`, repeating until that succeeds.
    pub(super) fn recover(
        &mut self,
        mut failure: Failure,
        mut record: Option<Box<WalRecord>>,
        through: u64,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(500), MAX_RETRY_DELAY);
        loop {
            let mut wait = true;
            if let Some(r) = record.take().filter(|_| failure.blames_record()) {
                match self.quarantine.put(&r, &failure.to_string()) {
                    Ok(path) => {
                        wait = false;
                        self.links.metrics.roll.quarantined(
                            (r.seq, r.batch.tag(), r.batch.len()),
                            &failure,
                            &path,
                        );
                    }
                    Err(e) => failure = Failure::File(WriteError::Io(e)),
                }
            }
            if wait {
                self.links.metrics.roll.failing(&failure, backoff.peek());
                self.links
                    .status
                    .set(format!("roller cannot write files: {failure}"));
                if !self.sleep(backoff.next_delay()) {
                    self.stopping = true;
                    return;
                }
            }
            match self.rebuild(through) {
                Ok(()) => {
                    self.links.status.clear();
                    return;
                }
                Err(RebuildError::Io(e)) => failure = Failure::File(WriteError::Io(e)),
                Err(RebuildError::Failed(f, r)) => {
                    failure = f;
                    record = Some(r);
                }
            }
        }
    }

    /// Sleeps unless shutdown comes first; false on shutdown.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if *self.links.shutdown.borrow() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
        true
    }

    /// Throws the open outputs away and processes the WAL again from the
    /// published release mark through `through`, as a restart would.
    pub(super) fn rebuild(&mut self, through: u64) -> Result<(), RebuildError> {
        self.discard_open();
        let from = self.publish.mark();
        self.last_seq = from.checked_sub(1);
        self.now_ms = i64::MIN;
        let wal_dir = self.wal_dir.clone();
        crate::wal::for_each_in(&wal_dir, from, through, |r| {
            if self.quarantine.contains(r.seq) {
                self.last_seq = Some(r.seq);
                return Ok(());
            }
            self.process_guarded(&r)
                .map_err(|f| RebuildError::Failed(f, Box::new(r)))
        })?;
        self.last_seq = Some(through.max(self.last_seq.unwrap_or(0)));
        Ok(())
    }

    /// Drops every open output and its file.
    pub(super) fn discard_open(&mut self) {
        for o in self.outputs.drain() {
            drop(o.output);
            let _ = std::fs::remove_file(&o.path);
        }
        self.report_gauges();
    }
}
