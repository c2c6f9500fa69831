//! UDP heartbeats (forward-protocol.md §7): Fluentd's `heartbeat_type udp`
//! sends a datagram to the forward port; the server answers each with the
//! single byte 0x00.

use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Answers heartbeats until shutdown.
pub(crate) async fn run(socket: UdpSocket, mut shutdown: watch::Receiver<bool>) {
    let mut buf = [0u8; 128];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match received {
            Ok((_, peer)) => {
                let _ = socket.send_to(&[0u8], peer).await;
            }
            Err(e) => tracing::debug!(error = %e, "UDP heartbeat receive failed"),
        }
    }
}
