//! Fault injection for tests: `WEIR_FAILPOINTS=name[,name=value…]`.
//!
//! [`hit`] makes the process abort (as abruptly as kill -9) when it reaches
//! a named point, so a test can crash weir at an exact moment instead of
//! hoping a timer hits it. [`value`] lets a point carry a parameter, such as
//! the tag whose records the roller should fail on. Unset in production;
//! checking costs one atomic load.

use std::sync::OnceLock;

static ACTIVE: OnceLock<Vec<(String, Option<String>)>> = OnceLock::new();

fn active() -> &'static [(String, Option<String>)] {
    ACTIVE.get_or_init(|| {
        std::env::var("WEIR_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(|s| match s.split_once('=') {
                        Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
                        None => (s.trim().to_string(), None),
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process if `name` is listed in `WEIR_FAILPOINTS`.
pub(crate) fn hit(name: &str) {
    if active().iter().any(|(n, _)| n == name) {
        eprintln!("weir: failpoint {name} reached; aborting");
        std::process::abort();
    }
}

/// Whether `name` is listed in `WEIR_FAILPOINTS` (with or without a value).
pub(crate) fn is_set(name: &str) -> bool {
    active().iter().any(|(n, _)| n == name)
}

/// The value given as `name=value` in `WEIR_FAILPOINTS`, if any.
pub(crate) fn value(name: &str) -> Option<&'static str> {
    active()
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}
