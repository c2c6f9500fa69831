//! The WAL's share of its file system: appends leave `wal.disk_reserve`
//! bytes free, so the stages behind the WAL (the roller finishing files, the
//! outbox taking them) always have room to free the WAL's own segments.
//!
//! Free space is asked of the file system (`statvfs`) at most once a second
//! while there is plenty, and before each group only when the estimate
//! (last answer minus bytes written since) comes near the reserve: cheap on
//! the ack path, exact where it matters.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How stale the free-space answer may be while far from the reserve.
const REFRESH: Duration = Duration::from_secs(1);

/// Free bytes the file system holding `path` gives an unprivileged writer.
///
/// # Errors
/// The path cannot be examined.
pub(super) fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable
    // memory the size of a statvfs; on success the kernel filled it.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32-bit block counts).
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Whether the WAL may write another group without going under the reserve.
pub(super) struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    /// Free bytes at the last look, less what was written since.
    estimate: u64,
    looked_at: Option<Instant>,
}

impl DiskGuard {
    pub(super) fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            estimate: 0,
            looked_at: None,
        }
    }

    /// The free bytes last seen (an estimate between looks).
    pub(super) fn free(&self) -> u64 {
        self.estimate
    }

    pub(super) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Whether `bytes` more can be written and still leave the reserve.
    /// Looks at the file system when the last look is stale or the estimate
    /// is close; a file system that cannot be examined admits (the write
    /// itself then says what is wrong).
    pub(super) fn admits(&mut self, bytes: u64) -> bool {
        if self.reserve == 0 {
            return true;
        }
        let need = self.reserve.saturating_add(bytes);
        let stale = self.looked_at.is_none_or(|t| t.elapsed() >= REFRESH);
        // Close: within twice what is asked of the reserve.
        if stale || self.estimate < need.saturating_add(bytes) {
            self.look();
        }
        self.estimate >= need
    }

    /// Asks the file system now.
    pub(super) fn look(&mut self) {
        match free_bytes(&self.dir) {
            Ok(free) => self.estimate = free,
            Err(e) => {
                tracing::debug!(error = %e, dir = %self.dir.display(), "cannot read free space");
                self.estimate = u64::MAX;
            }
        }
        self.looked_at = Some(Instant::now());
    }

    /// Counts `bytes` written since the last look.
    pub(super) fn wrote(&mut self, bytes: u64) {
        self.estimate = self.estimate.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_the_reserve_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let mut none = DiskGuard::new(dir.path(), 0);
        assert!(none.admits(u64::MAX / 2));
        // A reserve larger than the disk admits nothing; one far below it
        // admits, and counting writes brings the estimate down.
        let mut huge = DiskGuard::new(dir.path(), u64::MAX / 2);
        assert!(!huge.admits(1));
        let mut small = DiskGuard::new(dir.path(), 1);
        assert!(small.admits(1 << 10));
        let before = small.free();
        small.wrote(1 << 10);
        assert_eq!(small.free(), before - (1 << 10));
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }
}
