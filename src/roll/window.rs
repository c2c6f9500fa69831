//! Which file an event goes to, decided from its time and its record's
//! arrival stamp alone (so replay after a crash decides the same).
//!
//! - Its period's file is still open (arrival before period end + grace):
//!   the period's file.
//! - Its period's file is finished (arrival at or after period end + grace)
//!   and the event is less than `roll.max_past` old: a `late` file beside
//!   the period's file.
//! - Dated more than `roll.max_future` after arrival, or older than
//!   `roll.max_past`: the group's `outside` file, filed under the period the
//!   event arrived in.
//!
//! Every file an event can open is finished within `period + grace +
//! max_future` (period files) or `max(grace, 1m)` (late and outside files)
//! of the event's arrival, which bounds how long any event keeps the WAL.

/// Where one event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The period's file (period start in seconds).
    Period(i64),
    /// A late file for the period (period start in seconds).
    Late(i64),
    /// The group's outside file.
    Outside(Direction),
}

/// Which side of the window an outside event fell on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Past,
    Future,
}

/// The window's settings, in the units the roller works in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) period_secs: u64,
    pub(crate) grace_ms: i64,
    pub(crate) max_future_ms: i64,
    pub(crate) max_past_ms: i64,
}

impl Window {
    /// Classifies an event dated `time_ns` in a record that arrived at
    /// `arrival_ms` (both since the Unix epoch, UTC).
    pub(crate) fn slot(&self, time_ns: i64, arrival_ms: i64) -> Slot {
        let time_ms = time_ns.div_euclid(1_000_000);
        if time_ms > arrival_ms.saturating_add(self.max_future_ms) {
            return Slot::Outside(Direction::Future);
        }
        let ps = super::period_start(time_ns, self.period_secs);
        let closes_ms = (ps + self.period_secs as i64)
            .saturating_mul(1000)
            .saturating_add(self.grace_ms);
        if arrival_ms < closes_ms {
            Slot::Period(ps)
        } else if time_ms >= arrival_ms.saturating_sub(self.max_past_ms) {
            Slot::Late(ps)
        } else {
            Slot::Outside(Direction::Past)
        }
    }

    /// When a period's file is due: period end + grace, in ms.
    pub(crate) fn period_deadline_ms(&self, period_start: i64) -> i64 {
        (period_start + self.period_secs as i64)
            .saturating_mul(1000)
            .saturating_add(self.grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000; // ms
    const NS: i64 = 1_000_000; // ns per ms

    fn w() -> Window {
        Window {
            period_secs: 3600,
            grace_ms: 600_000,
            max_future_ms: 300_000,
            max_past_ms: 7 * 24 * H,
        }
    }

    #[test]
    fn the_window_decides_every_case() {
        let arrival = 1_000 * H + 5 * 60_000; // 00:05 past an hour
        let at = |ms: i64| w().slot(ms * NS, arrival);
        assert_eq!(at(arrival), Slot::Period(1000 * 3600));
        // The previous hour is still open during its grace.
        assert_eq!(at(arrival - H), Slot::Period(999 * 3600));
        // Two hours back: closed, so late beside its period.
        assert_eq!(at(arrival - 2 * H), Slot::Late(998 * 3600));
        // A fast clock within max_future: its own (next) period.
        assert_eq!(at(arrival + 300_000), Slot::Period(1000 * 3600));
        assert_eq!(
            at(arrival + 300_001),
            Slot::Outside(Direction::Future),
            "one ms past max_future"
        );
        assert_eq!(
            at(arrival + 10 * 365 * 24 * H),
            Slot::Outside(Direction::Future)
        );
        assert_eq!(
            at(arrival - 7 * 24 * H),
            Slot::Late(period(arrival - 7 * 24 * H))
        );
        assert_eq!(at(arrival - 7 * 24 * H - 1), Slot::Outside(Direction::Past));
        assert_eq!(at(0), Slot::Outside(Direction::Past));
    }

    fn period(ms: i64) -> i64 {
        ms.div_euclid(H) * 3600
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            for arrival in [i64::MIN, 0, 1_700_000_000_000, i64::MAX] {
                let _ = w().slot(t, arrival);
            }
        }
        assert_eq!(w().slot(i64::MAX, 0), Slot::Outside(Direction::Future));
        assert_eq!(
            w().slot(i64::MIN, 1_700_000_000_000),
            Slot::Outside(Direction::Past)
        );
    }
}
