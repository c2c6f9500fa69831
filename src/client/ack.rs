//! Reading the server's replies: whole msgpack objects, and acks.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::msgpack::{Cursor, FrameBuffer, Head};

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
