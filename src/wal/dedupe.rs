//! Recently logged chunk keys, so a client that resends a chunk whose ack
//! it missed gets an ack without a second copy being written.
//!
//! A key is a fixed-size hash of (peer address, tag, chunk id) ([`crate::input::dedupe_key`]), so
//! a chunk id of any length costs 16 bytes, in memory and in each WAL
//! record. The window holds the newest `forward.dedupe_window` keys.
//!
//! # Recovery
//! Keys live in their WAL records, and replay rebuilds the window from
//! them. Records are deleted with their segment once their events are in
//! finished files, but a client may resend such a chunk after a later crash
//! (it never saw the ack), so before segments are deleted the window is
//! saved to `wal/dedupe.snapshot`; recovery loads it, then replays.
//!
//! # Memory
//! `dedupe_window` × ~80 bytes (key, sequence, map and queue entries):
//! 8 MiB for the default 100,000.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A chunk's identity: 16 bytes of SHA-256 over (peer, tag, chunk).
pub(crate) type Key = [u8; KEY_LEN];

pub(crate) const KEY_LEN: usize = 16;

const SNAPSHOT_MAGIC: &[u8; 8] = b"WEIRDDP1";

/// The newest keys and the sequence of the record each came with.
pub(crate) struct Window {
    capacity: usize,
    seqs: HashMap<Key, u64>,
    order: VecDeque<Key>,
}

impl Window {
    /// A window of `capacity` keys (0: de-duplication off).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seqs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The sequence a key was logged with, if it is in the window.
    pub(crate) fn get(&self, key: &Key) -> Option<u64> {
        self.seqs.get(key).copied()
    }

    /// Remembers a key, forgetting the oldest past the capacity.
    pub(crate) fn remember(&mut self, key: Key, seq: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.seqs.insert(key, seq).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seqs.remove(&old);
            }
        }
    }

    /// Remembers a key read back from a WAL record (any other length is
    /// from an older format and ignored).
    pub(crate) fn remember_stored(&mut self, stored: &[u8], seq: u64) {
        if let Ok(k) = Key::try_from(stored) {
            self.remember(k, seq);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Writes the window to `path` atomically and durably.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = Vec::with_capacity(16 + self.order.len() * (KEY_LEN + 8));
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.order.len() as u64).to_le_bytes());
        for k in &self.order {
            out.extend_from_slice(k);
            out.extend_from_slice(&self.seqs.get(k).copied().unwrap_or(0).to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let tmp = tmp_path(path);
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            super::segment::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Loads a snapshot into the window (oldest first). A missing file is
    /// an empty window; a damaged one is an error the caller logs.
    pub(crate) fn load(&mut self, path: &Path) -> io::Result<usize> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "damaged dedupe snapshot");
        if data.len() < 20 || &data[..8] != SNAPSHOT_MAGIC {
            return Err(bad());
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad());
        }
        let count = u64::from_le_bytes(body[8..16].try_into().map_err(|_| bad())?) as usize;
        let entries = &body[16..];
        if entries.len() != count.saturating_mul(KEY_LEN + 8) {
            return Err(bad());
        }
        for e in entries.chunks_exact(KEY_LEN + 8) {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(&e[..KEY_LEN]);
            let seq = u64::from_le_bytes(e[KEY_LEN..].try_into().map_err(|_| bad())?);
            self.remember(k, seq);
        }
        Ok(count)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::dedupe_key as key;

    #[test]
    fn any_chunk_length_is_one_fixed_key_and_peers_differ() {
        let long = vec![b'x'; 4096];
        assert_eq!(key("10.0.0.1", b"t", &long).len(), KEY_LEN);
        assert_eq!(key("10.0.0.1", b"t", &long), key("10.0.0.1", b"t", &long));
        assert_ne!(key("10.0.0.1", b"t", b"c"), key("10.0.0.2", b"t", b"c"));
        assert_ne!(key("10.0.0.1", b"t", b"c"), key("10.0.0.1", b"u", b"c"));
    }

    #[test]
    fn the_window_is_bounded_and_survives_a_snapshot() {
        let mut w = Window::new(3);
        for i in 0..5u8 {
            w.remember([i; KEY_LEN], u64::from(i));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(&[0; KEY_LEN]), None);
        assert_eq!(w.get(&[4; KEY_LEN]), Some(4));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedupe.snapshot");
        w.save(&path).unwrap();
        let mut back = Window::new(3);
        assert_eq!(back.load(&path).unwrap(), 3);
        assert_eq!(back.get(&[2; KEY_LEN]), Some(2));
        assert_eq!(back.get(&[1; KEY_LEN]), None);
        // Damage is reported, not trusted.
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(Window::new(3).load(&path).is_err());
    }
}
