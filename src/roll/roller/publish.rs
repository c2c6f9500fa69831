//! What the roller tells the rest of weir about its progress: the release
//! mark (the lowest WAL sequence it still needs: the first record of its
//! oldest open output, or the next one to read) that lets the WAL delete
//! segments, and how far behind the writer it is (the lag gauges).

use std::sync::Arc;

use tokio::sync::watch;

pub(super) struct Publish {
    release: Arc<watch::Sender<u64>>,
    /// The release mark last published (what the WAL keeps).
    mark: u64,
    /// Arrival of the last record read, and when the roller last had read
    /// everything durable (at first, its start): every unread record
    /// arrived after both, so the lag is measured from the later.
    last_arrival_ms: i64,
    caught_up_ms: i64,
    /// The last lag measured: (records, seconds).
    lag: (u64, f64),
}

impl Publish {
    pub(super) fn new(release: Arc<watch::Sender<u64>>, now_ms: i64) -> Self {
        Self {
            release,
            mark: 0,
            last_arrival_ms: 0,
            caught_up_ms: now_ms,
            lag: (0, 0.0),
        }
    }

    /// Publishes the release mark: the oldest open output's first record,
    /// else the record after the last one processed.
    pub(super) fn release(&mut self, oldest_open: Option<u64>, last_seq: Option<u64>) {
        let mark = oldest_open.or(last_seq.map(|s| s + 1)).unwrap_or(0);
        self.mark = mark;
        self.release.send_if_modified(|v| {
            let changed = *v != mark;
            *v = mark;
            changed
        });
    }

    /// The release mark last published.
    pub(super) fn mark(&self) -> u64 {
        self.mark
    }

    /// A record that arrived at `arrival_ms` was read.
    pub(super) fn read(&mut self, arrival_ms: i64) {
        self.last_arrival_ms = arrival_ms;
    }

    /// Measures the lag: `behind` durable records not read yet, at `now_ms`.
    /// The seconds are those of the oldest unread record at most: since the
    /// later of the last record read and the last time nothing was unread
    /// (after a restart with a backlog, since the start: a lower bound).
    pub(super) fn measure_lag(&mut self, behind: u64, now_ms: i64) -> (u64, f64) {
        if behind == 0 {
            self.caught_up_ms = now_ms;
        }
        let since = self.last_arrival_ms.max(self.caught_up_ms);
        let secs = if behind == 0 {
            0.0
        } else {
            (now_ms - since).max(0) as f64 / 1000.0
        };
        self.lag = (behind, secs);
        self.lag
    }

    /// The last lag measured: (records, seconds).
    pub(super) fn lag(&self) -> (u64, f64) {
        self.lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_the_oldest_open_output_else_the_next_record() {
        let (tx, rx) = watch::channel(0);
        let mut p = Publish::new(Arc::new(tx), 0);
        p.release(Some(5), Some(9));
        assert_eq!((*rx.borrow(), p.mark()), (5, 5));
        p.release(None, Some(9));
        assert_eq!(*rx.borrow(), 10);
        p.release(None, None);
        assert_eq!(*rx.borrow(), 0);
    }

    #[test]
    fn lag_counts_from_the_later_of_last_read_and_caught_up() {
        let (tx, _rx) = watch::channel(0);
        let mut p = Publish::new(Arc::new(tx), 1_000);
        assert_eq!(p.measure_lag(0, 2_000), (0, 0.0));
        p.read(2_500);
        assert_eq!(p.measure_lag(3, 5_500), (3, 3.0), "since the last read");
        assert_eq!(p.lag(), (3, 3.0));
        assert_eq!(p.measure_lag(0, 6_000), (0, 0.0));
        assert_eq!(p.measure_lag(1, 7_000), (1, 1.0), "since caught up");
    }
}
