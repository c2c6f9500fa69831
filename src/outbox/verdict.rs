//! What one delivery attempt means for its file: a pure function of the
//! attempt's result, what the file is (a finished file, or a retained one
//! sent again by `weir redeliver` with a deadline) and whether the sink
//! commits. The delivery loop ([`super::delivery`]) carries it out.

use tokio::time::Instant;

use crate::sink::SinkError;

/// What the work item is, as far as its outcome goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A finished file from the outbox: retried until its sink has it.
    File,
    /// A retained file sent again: retried until `give_up_at`.
    Again { give_up_at: Instant },
}

/// What to do with a file after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The sink has it: record the delivery.
    Delivered,
    /// The sink has it but shows it only once committed: stage it.
    Stage,
    /// Try again after the file's backoff.
    Retry,
    /// Refused for good: to the dead-letter folder.
    DeadLetter,
    /// A redelivered file is done: sent (`true`) or given up.
    Redelivered(bool),
}

/// The verdict on `result` at `now`.
pub(super) fn judge(
    result: &Result<(), SinkError>,
    kind: Kind,
    commits: bool,
    now: Instant,
) -> Verdict {
    match (result, kind) {
        (Ok(()), _) if commits => Verdict::Stage,
        (Ok(()), Kind::File) => Verdict::Delivered,
        (Ok(()), Kind::Again { .. }) => Verdict::Redelivered(true),
        (Err(e), Kind::File) if e.is_permanent() => Verdict::DeadLetter,
        (Err(_), Kind::File) => Verdict::Retry,
        (Err(e), Kind::Again { give_up_at }) if !e.is_permanent() && now < give_up_at => {
            Verdict::Retry
        }
        (Err(_), Kind::Again { .. }) => Verdict::Redelivered(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transient() -> Result<(), SinkError> {
        Err(SinkError::Http("connection refused".into()))
    }

    fn rejected() -> Result<(), SinkError> {
        Err(SinkError::Rejected {
            status: 400,
            what: "bad part".into(),
        })
    }

    #[test]
    fn finished_files_are_delivered_retried_or_dead_lettered() {
        let now = Instant::now();
        assert_eq!(judge(&Ok(()), Kind::File, false, now), Verdict::Delivered);
        assert_eq!(judge(&Ok(()), Kind::File, true, now), Verdict::Stage);
        assert_eq!(judge(&transient(), Kind::File, false, now), Verdict::Retry);
        assert_eq!(
            judge(&rejected(), Kind::File, false, now),
            Verdict::DeadLetter
        );
        assert_eq!(
            judge(&rejected(), Kind::File, true, now),
            Verdict::DeadLetter
        );
        let auth = Err(SinkError::Unauthorized {
            status: 403,
            detail: "key revoked".into(),
        });
        assert_eq!(
            judge(&auth, Kind::File, false, now),
            Verdict::Retry,
            "a refused key is retried, never dead-lettered"
        );
    }

    #[test]
    fn redelivered_files_retry_until_their_deadline() {
        let now = Instant::now();
        let open = Kind::Again {
            give_up_at: now + Duration::from_secs(5),
        };
        let over = Kind::Again { give_up_at: now };
        assert_eq!(judge(&Ok(()), open, false, now), Verdict::Redelivered(true));
        assert_eq!(judge(&Ok(()), open, true, now), Verdict::Stage);
        assert_eq!(judge(&transient(), open, false, now), Verdict::Retry);
        assert_eq!(
            judge(&transient(), over, false, now),
            Verdict::Redelivered(false)
        );
        assert_eq!(
            judge(&rejected(), open, false, now),
            Verdict::Redelivered(false),
            "a retained file is never dead-lettered: it stays retained"
        );
    }
}
