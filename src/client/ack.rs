//! Reading the server's replies: whole msgpack objects, and acks.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::msgpack::{Cursor, FrameBuffer, Head};

/// Largest reply a server may send: an ack, a HELO or a PONG is well under
/// a kilobyte, so a server that sends more (an endless or huge object) is
/// refused rather than buffered.
///
/// # Memory
/// At most this, plus one read, per connection.
pub(crate) const MAX_REPLY_BYTES: usize = 64 << 10;

/// Reads until `frames` holds a complete object and returns it; `when` says
/// what was awaited, for the error.
pub(super) async fn next_frame<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    frames: &mut FrameBuffer,
    when: &str,
) -> anyhow::Result<Bytes> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(frame) = frames.next_frame()? {
            return Ok(frame);
        }
        anyhow::ensure!(
            frames.pending() <= MAX_REPLY_BYTES,
            "the server sent more than {MAX_REPLY_BYTES} bytes {when} without completing a reply"
        );
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection {when}");
        frames.extend(&chunk[..n]);
    }
}

/// Reads the server's next `{"ack": chunk}` and returns the chunk's bytes.
/// Keep one `frames` per connection: it holds bytes read past a reply.
pub(crate) async fn read_ack<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    frames: &mut FrameBuffer,
) -> anyhow::Result<Vec<u8>> {
    let reply = next_frame(s, frames, "before acking").await?;
    if crate::input::forward::messages::parse_helo(&reply).is_ok() {
        anyhow::bail!("the server asks for the shared-key handshake: set shared_key");
    }
    ack_of(&reply)?
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow::anyhow!("the server replied with something other than an ack"))
}

/// The chunk id of a complete `{"ack": chunk}` reply; `None` for any other
/// object (HELO, PONG).
pub(crate) fn ack_of(reply: &[u8]) -> Result<Option<&[u8]>, crate::msgpack::MsgpackError> {
    let mut c = Cursor::new(reply);
    let Head::Map(pairs) = c.head()? else {
        return Ok(None);
    };
    for _ in 0..pairs {
        match c.bytes()? {
            Some(b"ack") => return c.bytes(),
            Some(_) => {
                c.skip()?;
            }
            None => {
                c.skip()?;
                c.skip()?;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_or_endless_reply_is_refused_not_buffered() {
        // A bin32 of 4 GiB announced, then zeros.
        let mut reply = vec![0xc6, 0xff, 0xff, 0xff, 0xff];
        reply.extend(std::iter::repeat_n(0u8, 200 << 10));
        let mut frames = FrameBuffer::new();
        let err = read_ack(&mut &reply[..], &mut frames).await.unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        assert!(frames.pending() <= MAX_REPLY_BYTES + 1024);
    }

    #[tokio::test]
    async fn a_helo_instead_of_an_ack_says_a_key_is_needed() {
        let helo =
            crate::input::forward::messages::helo(&crate::input::forward::messages::HeloOptions {
                nonce: vec![1; 16],
                auth: vec![],
                keepalive: true,
            });
        let err = read_ack(&mut &helo[..], &mut FrameBuffer::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("shared_key"), "{err}");
    }
}
