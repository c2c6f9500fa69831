//! The one way an input hands events to the WAL and learns it may answer
//! its client (invariant 1: an ack, a 2xx, only once durable), and the one
//! de-duplication key for inputs whose clients name what they send.

use crate::event::EventBatch;
use crate::wal::{DurableReply, WalError, WalHandle};
use crate::wal::{Key, KEY_LEN};

/// Hands `batch` to the WAL; the reply answers once the batch is durable
/// (its sequence) or cannot be (then the client must not be told it was
/// stored). A resent batch with the same `key` is not written twice: the
/// reply carries the first copy's sequence.
///
/// # Errors
/// The WAL has stopped.
pub(crate) async fn submit(
    wal: &WalHandle,
    batch: EventBatch,
    key: Option<Key>,
) -> Result<DurableReply, WalError> {
    wal.submit_keyed(batch, key).await
}

/// Hands `batch` to the WAL and waits until it is durable.
///
/// # Errors
/// The WAL could not make it durable; the client must not be told it was
/// stored.
pub(crate) async fn store(
    wal: &WalHandle,
    batch: EventBatch,
    key: Option<Key>,
) -> Result<u64, WalError> {
    submit(wal, batch, key)
        .await?
        .await
        .map_err(|_| WalError::Closed)?
}

/// The de-duplication key of something a client named (a forward chunk id,
/// an HTTP `Idempotency-Key`): the client's address and the tag are part of
/// it, because Fluent Bit derives chunk ids from content, so two agents can
/// send the same id for different events. The bytes are the ones weir has
/// always stored, so keys survive an upgrade.
/// Chunk ids weir's forward output makes: `weir:` and 16 bytes digested
/// from the sending node, sink, tag and WAL position, so unique by
/// construction. Such a chunk is recognised whatever address it is resent
/// from (a restarted sender pod has a new one).
pub(crate) const WEIR_CHUNK_PREFIX: &str = "weir:";

/// The `source` part of a forward chunk's [`dedupe_key`]: the peer's
/// address, or `weir` for a chunk id weir's forward output made
/// ([`WEIR_CHUNK_PREFIX`]). `chunk` is the id's msgpack bytes.
pub(crate) fn chunk_source(peer_ip: std::net::IpAddr, chunk: &[u8]) -> String {
    let mut c = crate::msgpack::Cursor::new(chunk);
    match c.bytes() {
        Ok(Some(id)) if id.starts_with(WEIR_CHUNK_PREFIX.as_bytes()) && id.len() == 29 => {
            "weir".to_string()
        }
        _ => peer_ip.to_string(),
    }
}

pub(crate) fn dedupe_key(source: &str, tag: &[u8], id: &[u8]) -> Key {
    let d = crate::ids::digest(&[b"chunk", source.as_bytes(), tag, id]);
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&d[..KEY_LEN]);
    k
}
