//! One memory budget for every connection's requests in flight
//! (`forward.max_inflight_bytes`): read buffers past a small free
//! allowance, decompressed entries and decoded batches take from it before
//! they grow, and give back once the request is acked. When it is spent a
//! connection waits (it stops reading: backpressure) rather than weir
//! growing or dropping anyone.
//!
//! # No deadlock
//! Requests grow as their bytes arrive, so connections hold part of what
//! they need while they wait for more; with only a shared pool, 200
//! half-read requests could hold it all and wait forever. So the budget is
//! a shared pool plus a *reserve* of one largest request
//! (`max_buffer_bytes + max_decompressed_bytes`). A connection that finds
//! the pool spent waits for the pool or for the reserve's single token,
//! whichever comes first; the token's holder grows into the reserve
//! without waiting, finishes its request and passes the token on. One
//! request always makes progress.
//!
//! # Memory
//! `max_inflight_bytes` plus [`FREE_PER_CONNECTION`] per open connection.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Read buffer a connection may hold without taking from the budget, so
/// idle connections and small requests never contend for it.
pub(crate) const FREE_PER_CONNECTION: usize = 16 << 10;

/// Permits count KiB.
const UNIT: usize = 1024;

/// The shared budget.
#[derive(Clone)]
pub(crate) struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// The shared pool, in units.
    pool: Arc<Semaphore>,
    pool_units: usize,
    /// One token for the reserve.
    token: Arc<Semaphore>,
    reserve_units: usize,
    metrics: Metrics,
}

/// Memory one connection holds; given back when shrunk, released or dropped.
pub(crate) struct Reservation {
    pool: Option<OwnedSemaphorePermit>,
    /// Held with the reserve's token.
    token: Option<OwnedSemaphorePermit>,
    reserve_units: usize,
    budget: MemoryBudget,
}

impl Reservation {
    fn units(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.num_permits()) + self.reserve_units
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.units() * UNIT
    }

    /// Whether this connection holds the reserve's token.
    pub(crate) fn holds_reserve(&self) -> bool {
        self.token.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.units() > 0 {
            self.pool = None;
            self.reserve_units = 0;
            self.token = None;
            self.budget.report();
        }
    }
}

impl MemoryBudget {
    /// A budget of `bytes`, of which `largest_request` bytes are the
    /// reserve (clamped to the budget).
    pub(crate) fn new(bytes: usize, largest_request: usize, metrics: Metrics) -> Self {
        let total = bytes.div_ceil(UNIT).max(2);
        let reserve_units = largest_request.div_ceil(UNIT).clamp(1, total - 1);
        let pool_units = total - reserve_units;
        Self {
            inner: Arc::new(Inner {
                pool: Arc::new(Semaphore::new(pool_units)),
                pool_units,
                token: Arc::new(Semaphore::new(1)),
                reserve_units,
                metrics,
            }),
        }
    }

    /// An empty reservation against this budget.
    pub(crate) fn reservation(&self) -> Reservation {
        Reservation {
            pool: None,
            token: None,
            reserve_units: 0,
            budget: self.clone(),
        }
    }

    /// Bytes a request can ever hold without the reserve (the whole pool):
    /// one that never waits must fit in this.
    pub(crate) fn pool_bytes(&self) -> usize {
        self.inner.pool_units * UNIT
    }

    /// Bytes of the budget in use.
    pub(crate) fn in_use(&self) -> usize {
        let i = &self.inner;
        let reserve = if i.token.available_permits() == 0 {
            // Not exact (the holder's share is in its reservation), but the
            // gauge is for people: count the reserve as taken.
            i.reserve_units
        } else {
            0
        };
        (i.pool_units - i.pool.available_permits() + reserve) * UNIT
    }

    fn report(&self) {
        self.inner.metrics.forward.report_inflight(self.in_use());
    }

    /// Grows `held` to cover `bytes`, waiting while the budget is spent.
    pub(crate) async fn grow_to(&self, held: &mut Reservation, bytes: usize) {
        let i = &self.inner;
        let want = bytes.div_ceil(UNIT).min(i.pool_units + i.reserve_units);
        let have = held.units();
        if want <= have {
            return;
        }
        let mut more = want - have;
        // The token's holder grows into the reserve first.
        if held.token.is_some() {
            let from_reserve = more.min(i.reserve_units - held.reserve_units);
            held.reserve_units += from_reserve;
            more -= from_reserve;
        }
        if more == 0 {
            self.report();
            return;
        }
        let permit = match i.pool.clone().try_acquire_many_owned(more as u32) {
            Ok(p) => Some(p),
            Err(_) => {
                i.metrics.forward.memory_wait();
                let pool = i.pool.clone();
                let token = i.token.clone();
                tokio::select! {
                    biased;
                    p = pool.acquire_many_owned(more as u32) => p.ok(),
                    t = token.acquire_owned(), if held.token.is_none() => {
                        held.token = t.ok();
                        None
                    }
                }
            }
        };
        match (permit, &mut held.pool) {
            (Some(p), Some(h)) => h.merge(p),
            (Some(p), None) => held.pool = Some(p),
            (None, _) => {
                // Took the token: the rest comes from the reserve (and, past
                // it, from the pool, waiting as usual).
                let from_reserve = more.min(i.reserve_units - held.reserve_units);
                held.reserve_units += from_reserve;
                let rest = more - from_reserve;
                if rest > 0 {
                    if let Ok(p) = i.pool.clone().acquire_many_owned(rest as u32).await {
                        match &mut held.pool {
                            Some(h) => h.merge(p),
                            None => held.pool = Some(p),
                        }
                    }
                }
            }
        }
        self.report();
    }

    /// Grows `held` to cover `bytes` from the pool if that needs no wait
    /// (never from the reserve); false, and `held` unchanged, otherwise.
    pub(crate) fn try_grow_to(&self, held: &mut Reservation, bytes: usize) -> bool {
        let i = &self.inner;
        let want = bytes.div_ceil(UNIT);
        let have = held.units();
        if want <= have {
            return true;
        }
        if held.token.is_some() {
            return false;
        }
        match i.pool.clone().try_acquire_many_owned((want - have) as u32) {
            Ok(p) => {
                match &mut held.pool {
                    Some(h) => h.merge(p),
                    None => held.pool = Some(p),
                }
                self.report();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back what `held` has beyond `bytes`; the reserve first, and its
    /// token once the reserve is no longer used.
    pub(crate) fn shrink_to(&self, held: &mut Reservation, bytes: usize) {
        let want = bytes.div_ceil(UNIT);
        let have = held.units();
        if want >= have {
            return;
        }
        let mut give = have - want;
        let from_reserve = give.min(held.reserve_units);
        held.reserve_units -= from_reserve;
        give -= from_reserve;
        if give > 0 {
            if let Some(p) = &mut held.pool {
                if give >= p.num_permits() {
                    held.pool = None;
                } else if let Some(part) = p.split(give) {
                    drop(part);
                }
            }
        }
        if held.reserve_units == 0 {
            held.token = None;
        }
        self.report();
    }

    /// Gives back everything `held` has.
    pub(crate) fn release(&self, held: &mut Reservation) {
        self.shrink_to(held, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_spent_pool_makes_the_next_one_wait() {
        let m = Metrics::new();
        // 100 KiB: 60 KiB pool and a 40 KiB reserve.
        let b = MemoryBudget::new(100 << 10, 40 << 10, m.clone());
        let mut a = b.reservation();
        b.grow_to(&mut a, 60 << 10).await;
        assert_eq!(a.bytes(), 60 << 10);
        // The pool is spent; the next takes the reserve's token.
        let mut c = b.reservation();
        b.grow_to(&mut c, 30 << 10).await;
        assert_eq!(c.bytes(), 30 << 10);
        // And the one after waits for either.
        let mut d = b.reservation();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), b.grow_to(&mut d, 10 << 10)).await;
        assert!(waiting.is_err());
        b.release(&mut c);
        b.grow_to(&mut d, 10 << 10).await;
        assert_eq!(d.bytes(), 10 << 10);
        assert!(m.value("weir_forward_memory_waits_total", &[]) >= 2.0);
    }

    /// Many requests each holding part of the pool and all wanting more:
    /// with a pool alone none could finish; the reserve lets them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_read_requests_do_not_deadlock() {
        let b = MemoryBudget::new(64 << 20, 8 << 20, Metrics::new());
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = b.reservation();
                // A request of 8 MiB arriving 64 KiB at a time.
                let mut have = 0;
                while have < 8 << 20 {
                    have += 64 << 10;
                    b.grow_to(&mut r, have).await;
                    tokio::task::yield_now().await;
                }
                b.release(&mut r);
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("every request finishes");
        assert_eq!(b.in_use(), 0);
    }
}
