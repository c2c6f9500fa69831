//! What finished files and previews hold, so replay never writes an event
//! twice: per output (under a fixed-size [`CoverageKey`]), the WAL sequence
//! its finished files cover through, and the one its committed previews
//! reach.
//!
//! # Memory
//! One entry (16-byte key and a sequence) per output with a finished file
//! or preview whose records the WAL still holds; [`Coverage::forget_below`]
//! drops the rest as the WAL deletes segments.

use std::collections::HashMap;

use super::output::CoverageKey;

#[derive(Default)]
pub(super) struct Coverage {
    finished: HashMap<CoverageKey, u64>,
    previewed: HashMap<CoverageKey, u64>,
}

impl Coverage {
    /// A finished file of `key` covers every one of its events through
    /// `through`.
    pub(super) fn finished(&mut self, key: CoverageKey, through: u64) {
        let e = self.finished.entry(key).or_insert(0);
        *e = (*e).max(through);
    }

    /// A committed preview of `key` holds its events through `through`.
    pub(super) fn previewed(&mut self, key: CoverageKey, through: u64) {
        let e = self.previewed.entry(key).or_insert(0);
        *e = (*e).max(through);
    }

    /// Whether record `seq`'s events of `key` are in a finished file.
    pub(super) fn is_finished(&self, key: &CoverageKey, seq: u64) -> bool {
        self.finished.get(key).is_some_and(|&c| seq <= c)
    }

    /// Whether record `seq` of `key` is past what its previews hold (a new
    /// preview may start with it).
    pub(super) fn is_past_previews(&self, key: &CoverageKey, seq: u64) -> bool {
        self.previewed.get(key).is_none_or(|&d| seq > d)
    }

    /// Forgets what covers only records below `oldest`: the WAL no longer
    /// holds them, so replay never meets them.
    pub(super) fn forget_below(&mut self, oldest: u64) {
        self.finished.retain(|_, c| *c >= oldest);
        self.previewed.retain(|_, c| *c >= oldest);
    }

    /// Finished outputs remembered.
    pub(super) fn entries(&self) -> usize {
        self.finished.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_grows_and_is_forgotten_with_the_wal() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let mut c = Coverage::default();
        c.finished(a, 10);
        c.finished(a, 7);
        assert!(
            c.is_finished(&a, 10) && !c.is_finished(&a, 11),
            "the later mark stays"
        );
        assert!(!c.is_finished(&b, 1));
        c.previewed(b, 5);
        assert!(!c.is_past_previews(&b, 5) && c.is_past_previews(&b, 6));
        assert!(c.is_past_previews(&a, 0), "no preview yet");
        c.forget_below(8);
        assert_eq!(c.entries(), 1);
        assert!(
            c.is_past_previews(&b, 1),
            "the preview mark went with its records"
        );
        c.forget_below(11);
        assert_eq!(c.entries(), 0);
    }
}
