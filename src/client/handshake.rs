//! The client's half of the shared-key handshake: HELO in, PING out, PONG in.

use tokio::io::AsyncWriteExt;

use super::{ClientSettings, Stream};
use crate::input::forward::handshake::sha512_hex;
use crate::input::forward::messages;
use crate::msgpack::FrameBuffer;

pub(super) async fn run(s: &mut Stream, key: &str, o: &ClientSettings) -> anyhow::Result<()> {
    let mut frames = FrameBuffer::new();
    let helo = super::ack::next_frame(s, &mut frames, "during the handshake").await?;
    let helo = messages::parse_helo(&helo).map_err(anyhow::Error::msg)?;
    let salt = format!("{:032x}", rand::random::<u128>());
    let digest = sha512_hex(&[
        salt.as_bytes(),
        o.hostname.as_bytes(),
        &helo.nonce,
        key.as_bytes(),
    ]);
    let password_digest = if o.username.is_empty() {
        String::new()
    } else {
        sha512_hex(&[&helo.auth, o.username.as_bytes(), o.password.as_bytes()])
    };
    let ping = messages::ping(&o.hostname, &salt, &digest, &o.username, &password_digest);
    s.write_all(&ping).await?;
    let pong = super::ack::next_frame(s, &mut frames, "during the handshake").await?;
    match messages::parse_pong(&pong).map_err(anyhow::Error::msg)? {
        Ok(()) => Ok(()),
        Err(reason) => anyhow::bail!("handshake refused: {reason}"),
    }
}
