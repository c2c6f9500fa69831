//! Writes capture records from any number of connections to one file (the
//! `weir capture` proxy) or to a directory of rotating files
//! (`[forward] capture_dir`), on a thread of its own so disk stalls never
//! reach a socket.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::format::{encode_header, write_record, Kind, Record, HEADER_LEN};
use crate::metrics::Metrics;

/// Records waiting for the writer thread; past this `try_record` drops.
const QUEUE: usize = 8192;
/// Payload bytes waiting for the writer thread; past this too. Requests
/// can be megabytes, so a count alone would not bound the memory.
const QUEUE_BYTES: usize = 64 << 20;

/// Where records go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One file, created (or truncated) at start.
    File(PathBuf),
    /// `capture-<UTC start>.wcap` files in a directory: a new one once the
    /// current one reaches `max_file_bytes`; only the newest `max_files` kept.
    Rotating {
        dir: PathBuf,
        max_file_bytes: u64,
        max_files: usize,
    },
}

struct Entry {
    kind: Kind,
    conn: u64,
    at_unix_us: u64,
    payload: Bytes,
    /// The payload's share of [`QUEUE_BYTES`], returned once written.
    _room: OwnedSemaphorePermit,
}

/// A cloneable handle that connections record through.
#[derive(Clone)]
pub(crate) struct Capture {
    tx: mpsc::Sender<Entry>,
    /// Free bytes of the queue, one permit per byte.
    room: Arc<Semaphore>,
    queue_bytes: usize,
    next_conn: Arc<AtomicU64>,
    metrics: Metrics,
}

/// The writer thread; [`Writer::finish`] flushes and closes the file once
/// every [`Capture`] handle is dropped.
pub(crate) struct Writer {
    thread: JoinHandle<()>,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Capture {
    /// Starts the writer thread. The first file is opened now so a bad path
    /// is reported at start-up, not at the first request.
    pub(crate) fn start(target: Target, metrics: Metrics) -> std::io::Result<(Capture, Writer)> {
        let mut files = Files::new(target)?;
        files.open()?;
        let (tx, mut rx) = mpsc::channel::<Entry>(QUEUE);
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("weir-capture".into())
            .spawn(move || {
                while let Some(msg) = rx.blocking_recv() {
                    let mut next = Some(msg);
                    // Flush whenever the queue runs dry: a reader of the
                    // file (or a crash) sees everything up to a moment ago.
                    while let Some(msg) = next {
                        files.write(msg, &m);
                        next = rx.try_recv().ok();
                    }
                    files.flush(&m);
                }
                files.flush(&m);
            })?;
        Ok((Capture::new(tx, QUEUE_BYTES, metrics), Writer { thread }))
    }

    fn new(tx: mpsc::Sender<Entry>, queue_bytes: usize, metrics: Metrics) -> Self {
        Capture {
            tx,
            room: Arc::new(Semaphore::new(queue_bytes)),
            queue_bytes,
            next_conn: Arc::new(AtomicU64::new(1)),
            metrics,
        }
    }

    /// Permits a payload needs: its size, though never more than the whole
    /// queue, so a lone record larger than it still goes through.
    fn share(&self, payload: &Bytes) -> u32 {
        payload
            .len()
            .min(self.queue_bytes)
            .try_into()
            .unwrap_or(u32::MAX)
    }

    /// A fresh connection id.
    pub(crate) fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn entry(kind: Kind, conn: u64, payload: Bytes, room: OwnedSemaphorePermit) -> Entry {
        Entry {
            kind,
            conn,
            at_unix_us: unix_us(),
            payload,
            _room: room,
        }
    }

    /// Records without waiting; a full queue (in records or bytes) drops the
    /// record (counted), so capture never slows ingestion.
    pub(crate) fn try_record(&self, kind: Kind, conn: u64, payload: Bytes) {
        let admitted = match self
            .room
            .clone()
            .try_acquire_many_owned(self.share(&payload))
        {
            Ok(room) => self
                .tx
                .try_send(Self::entry(kind, conn, payload, room))
                .is_ok(),
            Err(_) => false,
        };
        if !admitted {
            self.metrics.capture.queue_full();
        }
    }

    /// Records, waiting for room: for the proxy, where the capture is the point.
    pub(crate) async fn record(&self, kind: Kind, conn: u64, payload: Bytes) {
        let sent = match self
            .room
            .clone()
            .acquire_many_owned(self.share(&payload))
            .await
        {
            Ok(room) => self
                .tx
                .send(Self::entry(kind, conn, payload, room))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.metrics.capture.write_failed("the writer has stopped");
        }
    }
}

impl Writer {
    /// Waits for the thread to write what is queued and close the file.
    /// Every [`Capture`] clone must be dropped first.
    pub(crate) fn finish(self) {
        let _ = self.thread.join();
    }
}

/// The open file and the rotation policy.
struct Files {
    target: Target,
    current: Option<Open>,
    /// Files opened so far; part of the name so two files never collide.
    opened: u64,
}

struct Open {
    out: BufWriter<File>,
    path: PathBuf,
    started_unix_us: u64,
    bytes: u64,
}

impl Files {
    fn new(target: Target) -> std::io::Result<Self> {
        if let Target::Rotating { dir, .. } = &target {
            fs::create_dir_all(dir)?;
        }
        Ok(Self {
            target,
            current: None,
            opened: 0,
        })
    }

    fn open(&mut self) -> std::io::Result<()> {
        let started = unix_us();
        let path = match &self.target {
            Target::File(p) => p.clone(),
            Target::Rotating { dir, .. } => dir.join(file_name(started, self.opened)),
        };
        self.opened += 1;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        out.write_all(&encode_header(started))?;
        out.flush()?;
        self.current = Some(Open {
            out,
            path,
            started_unix_us: started,
            bytes: HEADER_LEN as u64,
        });
        if let Target::Rotating { dir, max_files, .. } = &self.target {
            prune(dir, *max_files);
        }
        Ok(())
    }

    fn write(&mut self, e: Entry, m: &Metrics) {
        let full = match (&self.current, &self.target) {
            (
                Some(o),
                Target::Rotating {
                    max_file_bytes: max,
                    ..
                },
            ) => o.bytes > HEADER_LEN as u64 && o.bytes + e.payload.len() as u64 > *max,
            _ => false,
        };
        if full {
            self.flush(m);
            self.current = None;
        }
        if self.current.is_none() {
            if let Err(err) = self.open() {
                self.failed(m, &format!("cannot open a capture file: {err}"));
                return;
            }
        }
        let Some(o) = self.current.as_mut() else {
            return;
        };
        let r = Record {
            kind: e.kind,
            conn: e.conn,
            offset_us: e.at_unix_us.saturating_sub(o.started_unix_us),
            payload: e.payload,
        };
        match write_record(&mut o.out, &r) {
            Ok(n) => {
                o.bytes += n as u64;
                m.capture.written(n);
            }
            Err(err) => {
                let why = format!("writing {}: {err}", o.path.display());
                // Start over in a new file rather than append after a
                // partial record.
                self.current = None;
                self.failed(m, &why);
            }
        }
    }

    fn flush(&mut self, m: &Metrics) {
        if let Some(o) = self.current.as_mut() {
            if let Err(err) = o.out.flush() {
                let why = format!("flushing {}: {err}", o.path.display());
                self.current = None;
                self.failed(m, &why);
            }
        }
    }

    fn failed(&self, m: &Metrics, why: &str) {
        m.capture.write_failed(why);
    }
}

/// `capture-20261125T203000.123456Z-000003.wcap`: sorts by time.
fn file_name(started_unix_us: u64, seq: u64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(started_unix_us as i64).unwrap_or_default();
    format!("capture-{}-{seq:06}.wcap", t.format("%Y%m%dT%H%M%S%.6fZ"))
}

/// Deletes the oldest capture files beyond `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("capture-") && n.ends_with(".wcap"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    for n in &names[..excess] {
        if let Err(e) = fs::remove_file(dir.join(n)) {
            tracing::warn!(file = n, error = %e, "capture: cannot delete an old capture file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::format::Reader;

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let metrics = Metrics::new();
        let cap = Capture::new(tx, 100, metrics.clone());
        let dropped =
            || metrics.value("weir_capture_dropped_total", &[("reason", "queue_full")]) as u64;
        let record = |n: usize| cap.try_record(Kind::Request, 1, Bytes::from(vec![0; n]));
        record(80);
        record(80); // 160 bytes would be queued: dropped, counted
        assert_eq!(dropped(), 1);
        // Once the writer has taken a record, its room comes back.
        drop(rx.try_recv().unwrap());
        record(80);
        assert_eq!(dropped(), 1);
        // A lone record larger than the whole queue still goes through.
        drop(rx.try_recv().unwrap());
        record(500);
        assert_eq!(dropped(), 1);
        assert_eq!(rx.try_recv().unwrap().payload.len(), 500);
    }

    #[test]
    fn rotates_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Rotating {
            dir: dir.path().to_path_buf(),
            max_file_bytes: 200,
            max_files: 3,
        };
        let (cap, writer) = Capture::start(target, Metrics::new()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..40u64 {
                cap.record(Kind::Request, 7, Bytes::from(vec![i as u8; 50]))
                    .await;
            }
        });
        drop(cap);
        writer.finish();
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        // The newest file ends with the last record; each holds whole records.
        let last: Vec<_> = Reader::open(files.last().unwrap()).unwrap().collect();
        assert_eq!(last.last().unwrap().payload[0], 39);
        for f in &files {
            let mut r = Reader::open(f).unwrap();
            assert!(r.by_ref().count() >= 1);
            assert!(r.damage().is_none());
        }
    }
}
