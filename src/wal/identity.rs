//! The WAL's identity: 16 random bytes made when a WAL is first created,
//! kept in `wal/identity`. Sequence numbers start again at 0 in a new WAL
//! (a data_dir lost or replaced, or a second node with the same node_id),
//! so whatever names data by its WAL position to another system (forward
//! chunk ids) adds the identity: a new WAL's chunks never look like an old
//! one's resends to a de-duplicating receiver.

use std::fs;
use std::io;
use std::path::Path;

const FILE: &str = "identity";

/// The identity of the WAL in `dir` (32 hex digits), made and stored
/// durably the first time.
///
/// # Errors
/// The folder or the file cannot be read or written.
pub(crate) fn load_or_create(dir: &Path) -> io::Result<String> {
    fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(s) if valid(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => tracing::warn!(file = %path.display(), "damaged WAL identity; making a new one"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!("{FILE}.tmp"));
    crate::outbox::write_synced(&tmp, id.as_bytes())?;
    fs::rename(&tmp, &path)?;
    super::segment::sync_dir(dir)?;
    Ok(id)
}

fn valid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(&dir.path().join("wal")).unwrap();
        let b = load_or_create(&dir.path().join("wal")).unwrap();
        assert_eq!(a, b);
        assert!(valid(&a));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            a,
            load_or_create(other.path()).unwrap(),
            "another WAL, another identity"
        );
        fs::write(dir.path().join("wal").join(FILE), "junk").unwrap();
        assert_ne!(a, load_or_create(&dir.path().join("wal")).unwrap());
    }
}
