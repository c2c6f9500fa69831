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
    pub(crate) rest: Duration,
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

    /// The servers to try a part with id `key` on at `now`, in order: the
    /// primaries that are up, then the standbys that are up, each by
    /// weighted rendezvous hashing of the part's id (shares follow the
    /// weights, and a part goes to the same server every time while it is
    /// up, so a part sent again after a crash meets the server that may
    /// have it); then the servers that rest, the earliest rest ending
    /// first.
    pub(super) fn order(&self, now: Instant, key: &[u8]) -> Vec<usize> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let up = |i: usize| health[i].down_until.is_none_or(|t| t <= now);
        let score = |i: usize| {
            let d = crate::ids::digest(&[key, self.list[i].address.as_bytes()]);
            let u = (crate::ids::leading_u64(&d) as f64 + 0.5) / 18_446_744_073_709_551_616.0;
            -u.ln() / f64::from(self.list[i].weight.max(1))
        };
        let ranked = |standby: bool| {
            let mut v: Vec<(f64, usize)> = (0..self.list.len())
                .filter(|i| self.list[*i].standby == standby && up(*i))
                .map(|i| (score(i), i))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v.into_iter().map(|(_, i)| i)
        };
        let mut order: Vec<usize> = ranked(false).chain(ranked(true)).collect();
        let mut resting: Vec<usize> = (0..self.list.len()).filter(|i| !up(*i)).collect();
        resting.sort_by_key(|i| (self.list[*i].standby, health[*i].down_until));
        order.extend(resting);
        order
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

    /// Which server each of 1000 parts goes to first.
    fn share(s: &Servers, now: Instant) -> Vec<usize> {
        let mut n = vec![0; s.list().len()];
        for k in 0..1000u32 {
            n[s.order(now, &k.to_le_bytes())[0]] += 1;
        }
        n
    }

    #[test]
    fn parts_follow_weights_and_standby_waits() {
        let s = servers(&[(60, false), (20, false), (60, true)]);
        let n = share(&s, Instant::now());
        assert!((700..800).contains(&n[0]) && n[2] == 0, "{n:?}");
        let order = s.order(Instant::now(), b"part");
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], 2, "the standby last");
        assert_eq!(
            order,
            s.order(Instant::now(), b"part"),
            "the same part, the same order"
        );
    }

    #[test]
    fn a_failed_server_rests_then_comes_back() {
        let s = servers(&[(1, false), (1, false)]);
        let t0 = Instant::now();
        let r = s.failed(0, t0);
        assert_eq!(share(&s, t0), vec![0, 1000], "the other takes everything");
        let back = share(&s, t0 + r.rest);
        assert!(
            back[0] > 400 && back[1] > 400,
            "used again after its rest: {back:?}"
        );
        let again = s.failed(0, t0 + r.rest);
        assert!(again.rest > r.rest, "rests longer");
        assert!(s.succeeded(0), "one ack: up");
        assert_eq!(share(&s, t0 + r.rest), back);
    }

    #[test]
    fn standby_takes_over_while_every_primary_rests() {
        let s = servers(&[(1, false), (1, true)]);
        let t0 = Instant::now();
        s.failed(0, t0);
        assert_eq!(share(&s, t0), vec![0, 1000]);
        s.failed(1, t0);
        // Both rest: the primary is tried first.
        assert_eq!(s.order(t0, b"x"), vec![0, 1]);
    }
}
