//! A connection's requests that are in the WAL's hands but not yet acked.
//!
//! A client keeps several requests unacked (Fluent Bit and Fluentd send
//! their next chunks before the first ack). Waiting for each request's
//! fsync before decoding the next would cost one fsync round trip per
//! request; instead the connection submits a request to the WAL and goes on
//! decoding, and writes the acks, in order, as the WAL makes them durable,
//! so one group commit covers several of a connection's requests.
//!
//! Memory: each pending batch keeps its share of the forward budget until
//! its ack; at most [`MAX_PENDING`] are pending. A connection never waits for
//! budget while it holds pending batches: it finishes them first (so the
//! budget cannot deadlock on batches whose release waits on that wait).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::budget::Reservation;
use super::settings::{CloseReason, ConnectionSettings};
use crate::metrics::Metrics;
use crate::wal::{DurableReply, WalError};

/// Most requests of one connection waiting for the WAL at once.
pub(super) const MAX_PENDING: usize = 16;

/// Requests larger than this are not pipelined: their own size already
/// spreads an fsync's cost, and a connection holding several of them at
/// once would only crowd others out of the memory budget.
pub(super) const MAX_PIPELINED_FRAME: usize = 4 << 20;

/// One request handed to the WAL (or with nothing to store) whose ack is
/// still to be written.
pub(super) struct Pending {
    /// Answers when the batch is durable; `None` when no event was kept.
    pub durable: Option<DurableReply>,
    /// The answer, once it came.
    pub(crate) result: Option<Result<u64, WalError>>,
    pub(crate) ack: Option<Bytes>,
    pub(crate) events: u64,
    pub(crate) mode: &'static str,
    pub(crate) started: Instant,
    /// Budget bytes the batch holds until its ack.
    pub(crate) held_bytes: usize,
}

#[derive(Default)]
pub(super) struct Pipeline {
    pending: VecDeque<Pending>,
    /// Budget bytes all pending batches hold.
    pub(crate) bytes: usize,
}

impl Pipeline {
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= MAX_PENDING
    }

    pub(super) fn push(&mut self, p: Pending) {
        self.bytes += p.held_bytes;
        self.pending.push_back(p);
    }

    /// Waits until the oldest request's WAL answer is in (pending forever
    /// when there is none, for use in `select!`).
    pub(super) async fn wait_front(&mut self) {
        let Some(front) = self.pending.front_mut() else {
            return std::future::pending().await;
        };
        if front.result.is_none() {
            front.result = Some(match front.durable.as_mut() {
                Some(rx) => rx.await.unwrap_or(Err(WalError::Closed)),
                None => Ok(0),
            });
        }
    }

    /// Acks the oldest request once the WAL has it, giving back its budget.
    pub(super) async fn finish_front<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        held: &mut Reservation,
        settings: &ConnectionSettings,
        metrics: &Metrics,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), (CloseReason, String)> {
        tokio::select! {
            () = self.wait_front() => {}
            _ = shutdown.wait_for(|s| *s) => {
                return Err((CloseReason::Shutdown, "shutting down".into()))
            }
        }
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        self.bytes -= p.held_bytes;
        let keep = held.bytes().saturating_sub(p.held_bytes);
        settings.budget.shrink_to(held, keep);
        match p.result {
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err((CloseReason::WalUnavailable, e.to_string())),
        }
        if p.durable.is_some() {
            metrics.forward.stored(p.mode, p.events);
        }
        if let Some(ack) = p.ack {
            crate::failpoint::hit("forward.before_ack");
            // A client that never reads its acks cannot hold this task.
            match tokio::time::timeout(settings.request_timeout, stream.write_all(&ack)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err((CloseReason::IoError, format!("writing the ack: {e}"))),
                Err(_) => {
                    return Err((
                        CloseReason::IoError,
                        "the client does not read its acks (forward.request_timeout)".into(),
                    ))
                }
            }
            metrics.forward.acked(p.started.elapsed());
        }
        Ok(())
    }

    /// Acks every pending request, oldest first.
    pub(super) async fn finish_all<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        held: &mut Reservation,
        settings: &ConnectionSettings,
        metrics: &Metrics,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), (CloseReason, String)> {
        while !self.is_empty() {
            self.finish_front(stream, held, settings, metrics, shutdown)
                .await?;
        }
        Ok(())
    }
}
