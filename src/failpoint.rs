//! Crash injection for tests: `WEIR_FAILPOINTS=name[,name…]` makes the
//! process abort (as abruptly as kill -9) when it reaches a named point, so a
//! test can crash weir at an exact moment instead of hoping a timer hits it.
//! Unset in production; checking costs one atomic load.

use std::sync::OnceLock;

static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();

/// Aborts the process if `name` is listed in `WEIR_FAILPOINTS`.
pub fn hit(name: &str) {
    let active = ACTIVE.get_or_init(|| {
        std::env::var("WEIR_FAILPOINTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if active.iter().any(|a| a == name) {
        eprintln!("weir: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
