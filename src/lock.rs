//! The data_dir lock: taken first by every command that opens a data_dir
//! (`serve`, `drain`), before anything in it is read, removed or created,
//! so a second weir pointed at a live node's folder changes nothing.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Holds `data_dir/LOCK` (an advisory `flock`) until dropped. The kernel
/// drops it when the process dies, kill -9 included.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "data_dir {0} is locked by another weir process (serve or drain); nothing was changed"
    )]
    Held(PathBuf),
    #[error("cannot create or lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Fails if another weir holds `data_dir`'s lock; changes nothing (a
    /// missing folder or lock file is free).
    pub(crate) fn check_free(data_dir: &Path) -> Result<(), LockError> {
        let path = data_dir.join("LOCK");
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(data_dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// Creates `data_dir` if needed and locks it, without waiting.
    pub(crate) fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        let path = data_dir.join("LOCK");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(data_dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let second = DataDirLock::acquire(dir.path());
        assert!(matches!(second, Err(LockError::Held(_))), "{second:?}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
