//! The order a sink that takes previews (`fresh = true`) must see files in,
//! so the README's "everything so far" query stays complete and
//! duplicate-free whatever retries do:
//! - a period's file goes after the period's `part` files (then it replaces
//!   every period preview at once);
//! - previews of one open file go in WAL order (a later one never lands
//!   while an earlier one is still retrying: no gap);
//! - a preview whose finished file the sink already has is not uploaded at
//!   all (it would only be removed again).
//!
//! # Memory
//! One entry per file waiting in this sink's queue, and one per finished
//! file delivered in the last [`SEALED_FOR`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::manifest::{PreviewSlot, Slot};
use super::Manifest;

/// How long a delivered file is remembered as replacing its previews (a
/// preview retried longer than this is uploaded and then swept).
const SEALED_FOR: Duration = Duration::from_secs(2 * 3600);

/// (route, group, period start).
type Period = (String, String, i64);

/// What to do with a file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Upload,
    /// Not yet: an earlier file of the same period must go first.
    Wait,
    /// A preview the sink's finished files already replace: count it as
    /// delivered without uploading.
    Skip,
}

#[derive(Default)]
pub(super) struct Order {
    /// Part files waiting, per period.
    parts: BTreeMap<Period, usize>,
    /// Previews waiting, per open file: their first WAL sequences.
    previews: BTreeMap<(Period, PreviewSlot, u64), BTreeSet<u64>>,
    /// Finished files delivered: (period, slot, opened at; `None` for the
    /// period's file, which replaces every period preview).
    sealed: BTreeMap<(Period, PreviewSlot, Option<u64>), Instant>,
}

fn period_of(m: &Manifest) -> Period {
    (m.route.clone(), m.group_hex.clone(), m.period_start)
}

/// What a finished file replaces: (slot, opened at).
fn replaces(m: &Manifest) -> Option<(PreviewSlot, Option<u64>)> {
    match m.slot {
        Slot::Main => Some((PreviewSlot::Period, None)),
        Slot::Part => Some((PreviewSlot::Period, Some(m.first_seq))),
        Slot::Late => Some((PreviewSlot::Late, Some(m.first_seq))),
        Slot::Outside => Some((PreviewSlot::Outside, Some(m.first_seq))),
        Slot::Records | Slot::Preview => None,
    }
}

impl Order {
    /// A file entered the sink's queue.
    pub(super) fn admit(&mut self, m: &Manifest) {
        match (m.slot, m.preview_of) {
            (Slot::Part, _) => *self.parts.entry(period_of(m)).or_insert(0) += 1,
            (Slot::Preview, Some((slot, opened))) => {
                self.previews
                    .entry((period_of(m), slot, opened))
                    .or_default()
                    .insert(m.first_seq);
            }
            _ => {}
        }
    }

    pub(super) fn decide(&self, m: &Manifest) -> Decision {
        let period = period_of(m);
        match (m.slot, m.preview_of) {
            (Slot::Main, _) if self.parts.get(&period).is_some_and(|n| *n > 0) => Decision::Wait,
            (Slot::Preview, Some((slot, opened))) => {
                let replaced = self
                    .sealed
                    .contains_key(&(period.clone(), slot, Some(opened)))
                    || (slot == PreviewSlot::Period
                        && self.sealed.contains_key(&(period.clone(), slot, None)));
                if replaced {
                    return Decision::Skip;
                }
                let earlier = self
                    .previews
                    .get(&(period, slot, opened))
                    .and_then(|s| s.first())
                    .is_some_and(|first| *first < m.first_seq);
                if earlier {
                    Decision::Wait
                } else {
                    Decision::Upload
                }
            }
            _ => Decision::Upload,
        }
    }

    /// A file left the queue: `delivered` (or skipped), or dead-lettered.
    pub(super) fn done(&mut self, m: &Manifest, delivered: bool) {
        let period = period_of(m);
        match (m.slot, m.preview_of) {
            (Slot::Part, _) => {
                if let Some(n) = self.parts.get_mut(&period) {
                    *n -= 1;
                    if *n == 0 {
                        self.parts.remove(&period);
                    }
                }
            }
            (Slot::Preview, Some((slot, opened))) => {
                let key = (period.clone(), slot, opened);
                if let Some(s) = self.previews.get_mut(&key) {
                    s.remove(&m.first_seq);
                    if s.is_empty() {
                        self.previews.remove(&key);
                    }
                }
            }
            _ => {}
        }
        if let (true, Some((slot, opened))) = (delivered, replaces(m)) {
            let now = Instant::now();
            self.sealed
                .retain(|_, at| now.duration_since(*at) < SEALED_FOR);
            self.sealed.insert((period, slot, opened), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(slot: Slot, first_seq: u64, preview_of: Option<(PreviewSlot, u64)>) -> Manifest {
        let mut m: Manifest = serde_json::from_str(
            r#"{"version":2,"id":"x","route":"r","group_hex":"61","group":"a","period_start":0,
            "period_secs":3600,"first_seq":0,"covered_through":0,"rows":1,"bytes":1,"keys":{}}"#,
        )
        .unwrap();
        (m.slot, m.first_seq, m.preview_of) = (slot, first_seq, preview_of);
        m
    }

    #[test]
    fn periods_wait_for_parts_previews_go_in_order_and_replaced_ones_are_skipped() {
        let mut o = Order::default();
        let part = file(Slot::Part, 7, None);
        let main = file(Slot::Main, 100, None);
        let p7a = file(Slot::Preview, 7, Some((PreviewSlot::Period, 7)));
        let p7b = file(Slot::Preview, 20, Some((PreviewSlot::Period, 7)));
        let p100 = file(Slot::Preview, 100, Some((PreviewSlot::Period, 100)));
        for m in [&part, &main, &p7a, &p7b, &p100] {
            o.admit(m);
        }
        assert_eq!(o.decide(&main), Decision::Wait);
        assert_eq!(o.decide(&p7b), Decision::Wait, "after p7a");
        assert_eq!(o.decide(&p7a), Decision::Upload);
        o.done(&p7a, true);
        assert_eq!(o.decide(&p7b), Decision::Upload);
        o.done(&part, true);
        assert_eq!(o.decide(&p7b), Decision::Skip, "part-7 replaces it");
        assert_eq!(o.decide(&p100), Decision::Upload);
        assert_eq!(o.decide(&main), Decision::Upload);
        o.done(&main, true);
        assert_eq!(
            o.decide(&p100),
            Decision::Skip,
            "the period's file replaces it"
        );
        let late = file(Slot::Preview, 5, Some((PreviewSlot::Late, 5)));
        o.admit(&late);
        assert_eq!(
            o.decide(&late),
            Decision::Upload,
            "late previews are not the period's"
        );
    }
}
