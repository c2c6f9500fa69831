//! The local-folder sink.
//!
//! A finished file is already synced in the outbox, so when the folder is
//! on the same file system the sink hard-links it in (a name, no copy, no
//! new inode) instead of copying it. Everything else, and any folder where
//! links fail (another file system, one without links), goes through
//! `object_store`'s local store, which copies.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::Attributes;

use super::object::ObjectStoreSink;
use super::{ListFuture, Sink, SinkError, SinkFuture};
use crate::sink::stores::LocalSinkConfig;
use crate::wal::sync_dir;

/// A folder on this machine; created if missing. Writes are fsynced and land
/// by rename, so a reader never sees half a file. A folder that cannot be
/// made yet (a volume not mounted, a permission, a file in the way) does
/// not stop weir: like a store that is down, the sink's probe says why,
/// files wait in the outbox, and each retry tries the folder again.
pub(super) fn build(c: &LocalSinkConfig) -> LocalSink {
    let sink = LocalSink {
        root: c.path.clone(),
        copy: OnceLock::new(),
        links_work: AtomicBool::new(true),
    };
    // Made now when it can be, so an idle sink's folder exists at start.
    let _ = sink.store();
    sink
}

pub(super) struct LocalSink {
    root: PathBuf,
    /// Copies, lists and deletes; set once the folder exists.
    copy: OnceLock<ObjectStoreSink>,
    /// Cleared at the first link the file system refuses; from then on
    /// every file is copied.
    links_work: AtomicBool,
}

impl LocalSink {
    /// The store over the folder, made (with the folder) at first use.
    fn store(&self) -> Result<&ObjectStoreSink, SinkError> {
        if let Some(store) = self.copy.get() {
            return Ok(store);
        }
        let cannot = |e: &dyn std::fmt::Display| {
            SinkError::Io(io::Error::other(format!(
                "cannot create the folder {}: {e}",
                self.root.display()
            )))
        };
        std::fs::create_dir_all(&self.root).map_err(|e| cannot(&e))?;
        let store = LocalFileSystem::new_with_prefix(&self.root)
            .map_err(|e| cannot(&e))?
            .with_fsync(true);
        let _ = self.copy.set(
            ObjectStoreSink::new(Arc::new(store), Attributes::new())
                .with_local_root(self.root.clone()),
        );
        self.copy
            .get()
            .ok_or_else(|| cannot(&"the store was not kept"))
    }
}

/// Where `key` lands under `root`, when the key is plain enough that this
/// is also where `object_store` puts, lists and deletes it (no escaping,
/// no `#`, which marks its staging files, no empty or dot segments).
fn plain_path(root: &Path, key: &str) -> Option<PathBuf> {
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-=+,@".contains(&b))
    };
    key.split('/').all(plain).then(|| root.join(key))
}

/// Creates the folders above `path` that are missing, syncing each parent
/// so a new folder survives a crash.
fn create_parents(root: &Path, path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while d != root && !d.is_dir() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => sync_dir(d.parent().unwrap_or(root))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why a link did not happen.
#[derive(Debug)]
enum LinkError {
    /// The file system will not link these paths: copy instead.
    Refused(io::Error),
    /// Anything else (a folder that cannot be made, a rename that fails):
    /// the upload failed and is retried.
    Io(io::Error),
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Whether two paths name the same file (a redelivery of a linked file).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Links the synced file at `from` in as `to`: under a staging name first,
/// then renamed over whatever was there (a redelivery), then the folder
/// synced.
fn link_in(root: &Path, from: &Path, to: &Path) -> Result<(), LinkError> {
    let folder = to.parent().unwrap_or(root);
    // Sent again after a crash, or redelivered while the folder still has
    // it: already there (and a rename onto the same file would do nothing,
    // leaving the staging name behind).
    if same_file(from, to) {
        return Ok(sync_dir(folder)?);
    }
    create_parents(root, to)?;
    let mut staging = to.as_os_str().to_owned();
    staging.push("#0");
    let staging = PathBuf::from(staging);
    let link = |staging: &Path| {
        std::fs::hard_link(from, staging).map_err(|e| {
            if e.raw_os_error().is_some_and(refuses_links) {
                LinkError::Refused(e)
            } else {
                LinkError::Io(e)
            }
        })
    };
    match link(&staging) {
        Err(LinkError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a crash between link and rename.
            std::fs::remove_file(&staging)?;
            link(&staging)?;
        }
        r => r?,
    }
    let renamed = std::fs::rename(&staging, to);
    // Gone after a rename, unless `to` had become the same file meanwhile.
    let _ = std::fs::remove_file(&staging);
    renamed?;
    Ok(sync_dir(folder)?)
}

impl Sink for LocalSink {
    fn put<'a>(&'a self, key: &'a str, path: &'a Path) -> SinkFuture<'a> {
        Box::pin(async move {
            let store = self.store()?;
            let target = plain_path(&self.root, key);
            if let (Some(to), true) = (target, self.links_work.load(Ordering::Relaxed)) {
                let (root, from) = (self.root.clone(), path.to_path_buf());
                let linked = tokio::task::spawn_blocking(move || link_in(&root, &from, &to))
                    .await
                    .map_err(|e| SinkError::Http(format!("link task failed: {e}")))?;
                match linked {
                    Ok(()) => return Ok(()),
                    // Another file system, or one without links: copy from
                    // now on. A refusal for this file only (EPERM, EMLINK):
                    // copy it, and link the next one.
                    Err(LinkError::Refused(e)) => {
                        if e.raw_os_error().is_some_and(refuses_links_always) {
                            tracing::info!(folder = %self.root.display(), error = %e, "the local sink's folder cannot take hard links from the outbox; copying files instead");
                            self.links_work.store(false, Ordering::Relaxed);
                        } else {
                            tracing::debug!(key, error = %e, "cannot hard-link this file; copying it");
                        }
                    }
                    Err(LinkError::Io(e)) => return Err(e.into()),
                }
            }
            store.put(key, path).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> ListFuture<'a> {
        match self.store() {
            Ok(store) => store.list(prefix),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn delete<'a>(&'a self, key: &'a str) -> SinkFuture<'a> {
        match self.store() {
            Ok(store) => store.delete(key),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    /// The folder is there and takes files (writes and removes one).
    fn probe(&self) -> SinkFuture<'_> {
        match self.store() {
            Ok(store) => store.probe(),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// The errors of a file system that cannot link these two paths: those
/// that hold for every file, or this file's own (not permitted, too many
/// links).
fn refuses_links(errno: i32) -> bool {
    refuses_links_always(errno) || [libc::EPERM, libc::EMLINK].contains(&errno)
}

/// Another file system, or one without links.
fn refuses_links_always(errno: i32) -> bool {
    [libc::EXDEV, libc::EOPNOTSUPP].contains(&errno)
}

impl crate::sink::kind::ObjectSinkKind for LocalSinkConfig {
    fn validate(&self, _name: &str) -> Result<(), crate::config::invalid::Invalid> {
        Ok(())
    }

    fn build(&self) -> Result<Arc<dyn crate::sink::Sink>, String> {
        Ok(Arc::new(build(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_keys_are_linked() {
        let root = Path::new("/r");
        assert_eq!(
            plain_path(root, "app/dt=2026-12-01/hour=19/n1.part-5.parquet"),
            Some(PathBuf::from(
                "/r/app/dt=2026-12-01/hour=19/n1.part-5.parquet"
            ))
        );
        for key in ["a b/x", "a/../x", "a//x", "x#1", "ü/x", "/x", "a/%41"] {
            assert_eq!(plain_path(root, key), None, "{key}");
        }
    }

    #[test]
    fn a_link_replaces_an_earlier_delivery_and_a_crash_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let from = dir.path().join("file");
        std::fs::write(&from, b"second").unwrap();
        let to = root.join("a/b/c.parquet");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, b"first").unwrap();
        std::fs::write(root.join("a/b/c.parquet#0"), b"left").unwrap();
        link_in(&root, &from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"second");
        assert!(!root.join("a/b/c.parquet#0").exists());
        // Again (a crash before the outbox removed it, a redelivery): the
        // same file, no staging name left beside it.
        link_in(&root, &from, &to).unwrap();
        let names: Vec<_> = std::fs::read_dir(root.join("a/b"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["c.parquet"]);
        // New folders are made.
        link_in(&root, &from, &root.join("x/y/z.parquet")).unwrap();
        assert_eq!(
            std::fs::read(root.join("x/y/z.parquet")).unwrap(),
            b"second"
        );
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_made_at_start_is_a_sink_down_not_a_failed_start() {
        let d = tempfile::tempdir().unwrap();
        let blocked = d.path().join("blocked");
        std::fs::write(&blocked, b"a file where the folder should be").unwrap();
        let sink = build(&LocalSinkConfig {
            path: blocked.join("lake"),
            prefix: String::new(),
            fresh: false,
            layout: Default::default(),
        });
        let file = d.path().join("f.parquet");
        std::fs::write(&file, b"PAR1").unwrap();
        let why = sink.probe().await.unwrap_err().to_string();
        assert!(why.contains("cannot create the folder"), "{why}");
        assert!(sink.put("app/x.parquet", &file).await.is_err());
        // The way is cleared: the next try makes the folder and delivers.
        std::fs::remove_file(&blocked).unwrap();
        sink.probe().await.unwrap();
        sink.put("app/x.parquet", &file).await.unwrap();
        assert_eq!(
            std::fs::read(blocked.join("lake/app/x.parquet")).unwrap(),
            b"PAR1"
        );
    }
}
