//! The queue from the WAL to the roller, bounded in records *and* bytes.
//!
//! A record bound alone lets memory grow with request size (256 queued 8 MiB
//! Fluentd chunks are 2 GiB); the byte bound keeps the queue's memory fixed
//! whatever clients send. When either bound is reached the WAL waits, and
//! with it every append: backpressure.

use std::sync::mpsc::{self, RecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};

use super::WalOutput;

struct Budget {
    /// Bytes of records queued and not yet received.
    queued: Mutex<Level>,
    freed: Condvar,
    limit: u64,
}

struct Level {
    bytes: u64,
    receiver_gone: bool,
}

/// The WAL's end.
pub struct QueueTx {
    tx: mpsc::SyncSender<WalOutput>,
    budget: Arc<Budget>,
}

/// The roller's end.
pub struct QueueRx {
    rx: mpsc::Receiver<WalOutput>,
    budget: Arc<Budget>,
}

/// A queue holding at most `records` messages and, beyond the first record,
/// at most `bytes` of records.
pub fn channel(records: usize, bytes: u64) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::sync_channel(records);
    let budget = Arc::new(Budget {
        queued: Mutex::new(Level {
            bytes: 0,
            receiver_gone: false,
        }),
        freed: Condvar::new(),
        limit: bytes,
    });
    (
        QueueTx {
            tx,
            budget: budget.clone(),
        },
        QueueRx { rx, budget },
    )
}

fn size(msg: &WalOutput) -> u64 {
    match msg {
        WalOutput::Record(r) => r.batch.as_bytes().len() as u64,
        _ => 0,
    }
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Level> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `n` more bytes fit (a lone record always fits).
    fn fits(&self, level: &Level, n: u64) -> bool {
        level.bytes == 0 || level.bytes + n <= self.limit
    }

    fn release(&self, n: u64) {
        if n > 0 {
            let mut l = self.lock();
            l.bytes = l.bytes.saturating_sub(n);
            self.freed.notify_all();
        }
    }
}

impl QueueTx {
    /// Queues without waiting; `Full` when either bound is reached.
    pub fn try_send(&self, msg: WalOutput) -> Result<(), TrySendError<WalOutput>> {
        let n = size(&msg);
        {
            let mut l = self.budget.lock();
            if l.receiver_gone {
                return Err(TrySendError::Disconnected(msg));
            }
            if !self.budget.fits(&l, n) {
                return Err(TrySendError::Full(msg));
            }
            l.bytes += n;
        }
        self.tx
            .try_send(msg)
            .inspect_err(|_| self.budget.release(n))
    }

    /// Queues, waiting for room; `Err` once the roller is gone.
    pub fn send(&self, msg: WalOutput) -> Result<(), mpsc::SendError<WalOutput>> {
        let n = size(&msg);
        {
            let mut l = self.budget.lock();
            while !l.receiver_gone && !self.budget.fits(&l, n) {
                l = self.budget.freed.wait(l).unwrap_or_else(|p| p.into_inner());
            }
            if l.receiver_gone {
                return Err(mpsc::SendError(msg));
            }
            l.bytes += n;
        }
        self.tx.send(msg).inspect_err(|_| self.budget.release(n))
    }
}

impl QueueRx {
    /// The next message, waiting for one; `Err` once the WAL is gone.
    pub fn recv(&self) -> Result<WalOutput, RecvError> {
        let msg = self.rx.recv()?;
        self.budget.release(size(&msg));
        Ok(msg)
    }

    /// Messages already queued.
    pub fn try_iter(&self) -> impl Iterator<Item = WalOutput> + '_ {
        std::iter::from_fn(|| {
            let msg = self.rx.try_recv().ok()?;
            self.budget.release(size(&msg));
            Some(msg)
        })
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.budget.lock().receiver_gone = true;
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchBuilder;
    use crate::wal::WalRecord;

    fn record(seq: u64, record_bytes: usize) -> WalOutput {
        let mut b = BatchBuilder::new(b"t", record_bytes);
        let mut rec = vec![0x81, 0xa1, b'x', 0xda];
        rec.extend_from_slice(&(record_bytes as u16).to_be_bytes());
        rec.resize(rec.len() + record_bytes, b'a');
        b.push(1, &rec);
        WalOutput::Record(WalRecord {
            seq,
            arrival_ms: 0,
            dedupe_key: bytes::Bytes::new(),
            batch: b.finish(),
        })
    }

    #[test]
    fn bytes_bound_the_queue_not_just_records() {
        let (tx, rx) = channel(1000, 10_000);
        tx.try_send(record(0, 6000)).unwrap();
        // A second 6 KB record would pass 10 KB: full, though 998 slots are free.
        assert!(matches!(
            tx.try_send(record(1, 6000)),
            Err(TrySendError::Full(_))
        ));
        // Ticks carry no bytes.
        tx.try_send(WalOutput::Tick { now_ms: 1 }).unwrap();
        let waiting = std::thread::spawn(move || {
            tx.send(record(1, 6000)).unwrap();
            tx
        });
        assert!(matches!(rx.recv(), Ok(WalOutput::Record(_))));
        let tx = waiting.join().unwrap();
        assert_eq!(rx.try_iter().count(), 2);
        // A lone record larger than the bound still goes through.
        tx.try_send(record(2, 20_000)).unwrap();
        drop(rx);
        assert!(tx.send(record(3, 20_000)).is_err());
    }
}
