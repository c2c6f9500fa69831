//! A deadline for every end-to-end test: a test that starts weir is watched
//! from then on, and when one runs past `WEIR_TEST_DEADLINE_SECS` (default
//! 900) the watchdog prints the names of every test still running, the tail
//! of each overdue test's weir log, kills the weir processes and ends the
//! test binary with a failure. A hung test fails the suite with its name
//! instead of hanging it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

struct Watched {
    test: String,
    since: Instant,
    pid: Option<u32>,
    log: PathBuf,
}

static WATCHED: Mutex<BTreeMap<u64, Watched>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static START: Once = Once::new();

fn deadline() -> Duration {
    let secs = std::env::var("WEIR_TEST_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    Duration::from_secs(secs)
}

fn watched() -> std::sync::MutexGuard<'static, BTreeMap<u64, Watched>> {
    WATCHED.lock().unwrap_or_else(|p| p.into_inner())
}

/// One watched weir of the running test; unwatched when dropped.
pub struct Watch(u64);

impl Watch {
    /// Watches the calling test (named after its thread, as libtest names
    /// them) from now on.
    pub fn new(log: PathBuf) -> Self {
        START.call_once(|| {
            std::thread::Builder::new()
                .name("e2e-watchdog".into())
                .spawn(watch)
                .expect("watchdog thread");
        });
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let test = std::thread::current()
            .name()
            .unwrap_or("(unnamed test)")
            .to_string();
        watched().insert(
            id,
            Watched {
                test,
                since: Instant::now(),
                pid: None,
                log,
            },
        );
        Watch(id)
    }

    /// The weir process now running for this test, if any.
    pub fn set_pid(&self, pid: Option<u32>) {
        if let Some(w) = watched().get_mut(&self.0) {
            w.pid = pid;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        watched().remove(&self.0);
    }
}

/// Writes to the process's stderr directly: `eprintln!` in a thread a test
/// started is captured with that test's output, and would be lost at exit.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn watch() {
    let limit = deadline();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let all = watched();
        let overdue: Vec<&Watched> = all.values().filter(|w| w.since.elapsed() > limit).collect();
        if overdue.is_empty() {
            continue;
        }
        let mut running: Vec<&str> = all.values().map(|w| w.test.as_str()).collect();
        running.sort_unstable();
        running.dedup();
        say!(
            "\n!! e2e deadline: {} ran past {} s; tests still running: {}",
            overdue[0].test,
            limit.as_secs(),
            running.join(", ")
        );
        for w in &overdue {
            let log = std::fs::read_to_string(&w.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            say!("-- {} (weir log, last lines):", w.test);
            for l in tail.iter().rev() {
                say!("   {l}");
            }
        }
        for w in all.values() {
            if let Some(pid) = w.pid {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        // libtest's summary will not come: say it here, then fail.
        say!("test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out (e2e deadline)");
        std::process::exit(101);
    }
}
