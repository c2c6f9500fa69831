//! Which server takes the next chunk: weighted among the servers that are
//! up, standby servers only while no other is. Health comes from what
//! sending shows (acks, connection errors, ack timeouts), so no heartbeat
//! is needed: a server that failed rests for a backoff (1 s doubling to
//! 30 s), then gets chunks again; one ack makes it up.
//!
//! # Memory
//! One entry per configured server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

use super::config::ForwardServer;

const MAX_REST: Duration = Duration::from_secs(30);
const REST: Backoff = Backoff::new(Duration::from_secs(1), MAX_REST);

struct Health {
    /// Resting after a failure until then.
    down_until: Option<Instant>,
    rest: Backoff,
}

pub(super) struct Servers {
    list: Vec<ForwardServer>,
    health: Mutex<Vec<Health>>,
}

/// How long a failed server rests.
pub(super) struct Rested {
    pub rest: Duration,
}

impl Servers {
    pub(super) fn new(list: Vec<ForwardServer>) -> Self {
        let health = list
            .iter()
            .map(|_| Health {
                down_until: None,
                rest: REST,
            })
            .collect();
        Self {
            list,
            health: Mutex::new(health),
        }
    }

    pub(super) fn list(&self) -> &[ForwardServer] {
        &self.list
    }

    /// The server for the next chunk at `now`, given a random `roll` in
    /// `0..1` (the caller's, so tests choose it).
    pub(super) fn pick(&self, now: Instant, roll: f64) -> usize {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let up = |i: &usize| health[*i].down_until.is_none_or(|t| t <= now);
        let primaries: Vec<usize> = (0..self.list.len())
            .filter(|i| !self.list[*i].standby)
            .filter(up)
            .collect();
        let candidates = if primaries.is_empty() {
            (0..self.list.len())
                .filter(|i| self.list[*i].standby)
                .filter(up)
                .collect()
        } else {
            primaries
        };
        if candidates.is_empty() {
            // Every server rests: try the primary whose rest ends first.
            return (0..self.list.len())
                .filter(|i| !self.list[*i].standby)
                .min_by_key(|i| health[*i].down_until)
                .unwrap_or(0);
        }
        let total: u64 = candidates.iter().map(|i| self.list[*i].weight as u64).sum();
        let mut at = (roll.clamp(0.0, 0.999_999) * total as f64) as u64;
        for i in &candidates {
            let w = self.list[*i].weight as u64;
            if at < w {
                return *i;
            }
            at -= w;
        }
        candidates[candidates.len() - 1]
    }

    /// The server acked: it is up. Returns whether it was down.
    pub(super) fn succeeded(&self, i: usize) -> bool {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = &mut health[i];
        let was_down = h.down_until.is_some();
        h.down_until = None;
        h.rest = REST;
        was_down
    }

    /// The server failed a chunk at `now`: it rests.
    pub(super) fn failed(&self, i: usize, now: Instant) -> Rested {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = &mut health[i];
        let rest = h.rest.next_delay().min(MAX_REST);
        h.down_until = Some(now + rest);
        Rested { rest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(spec: &[(u32, bool)]) -> Servers {
        Servers::new(
            spec.iter()
                .enumerate()
                .map(|(i, (weight, standby))| ForwardServer {
                    address: format!("s{i}:24224"),
                    weight: *weight,
                    standby: *standby,
                })
                .collect(),
        )
    }

    fn share(s: &Servers, now: Instant) -> Vec<usize> {
        let mut n = vec![0; s.list().len()];
        for k in 0..1000 {
            n[s.pick(now, k as f64 / 1000.0)] += 1;
        }
        n
    }

    #[test]
    fn chunks_follow_weights_and_standby_waits() {
        let s = servers(&[(60, false), (20, false), (60, true)]);
        assert_eq!(share(&s, Instant::now()), vec![750, 250, 0]);
    }

    #[test]
    fn a_failed_server_rests_then_comes_back() {
        let s = servers(&[(1, false), (1, false)]);
        let t0 = Instant::now();
        let r = s.failed(0, t0);
        assert_eq!(share(&s, t0), vec![0, 1000], "the other takes everything");
        assert_eq!(
            share(&s, t0 + r.rest),
            vec![500, 500],
            "used again after its rest"
        );
        let again = s.failed(0, t0 + r.rest);
        assert!(again.rest > r.rest, "rests longer");
        assert!(s.succeeded(0), "one ack: up");
        assert_eq!(share(&s, t0 + r.rest), vec![500, 500]);
    }

    #[test]
    fn standby_takes_over_while_every_primary_rests() {
        let s = servers(&[(1, false), (1, true)]);
        let t0 = Instant::now();
        s.failed(0, t0);
        assert_eq!(share(&s, t0), vec![0, 1000]);
        s.failed(1, t0);
        // Both rest: a primary is tried.
        assert_eq!(s.pick(t0, 0.5), 0);
    }
}
