//! Bounded, jittered retries of ITSM calls within one event's deadline.
//! Azure waits about 10 s for an answer, so every retry must leave room for
//! a whole attempt before the deadline; past it, Azure's own retry (after
//! our 503) takes over. An attempt is one state machine step, which may
//! make several requests (find, then create): the room left is for all of
//! them, each at the ITSM client's request timeout.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::ports::ItsmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// All ITSM calls of one event end by then.
    pub deadline: Duration,
    /// The longest one attempt can take: the ITSM client's request timeout
    /// times the most requests one attempt makes ([`RetryPolicy::new`]).
    pub attempt: Duration,
    /// The first backoff; it doubles with each retry.
    pub base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(8),
            attempt: Duration::from_secs(3),
            base: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// Retries within `deadline` of attempts that make at most `requests`
    /// requests of at most `timeout` each: no retry starts that could not
    /// finish before the deadline.
    pub fn new(deadline: Duration, timeout: Duration, requests: u32) -> RetryPolicy {
        RetryPolicy {
            deadline,
            attempt: timeout.saturating_mul(requests.max(1)),
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before retry `n` (1 for the first) after `error`,
    /// `elapsed` into the event; `None` when the error is final or no
    /// further attempt fits before the deadline.
    pub fn wait(&self, n: u32, error: &ItsmError, elapsed: Duration) -> Option<Duration> {
        let backoff = || jitter(self.base.saturating_mul(1 << n.saturating_sub(1).min(8)));
        let wait = match error {
            ItsmError::Rejected { .. } => return None,
            ItsmError::Unavailable(_) | ItsmError::Unanswered(_) | ItsmError::Busy(_) => backoff(),
            ItsmError::Throttled { retry_after, .. } => retry_after.unwrap_or_else(backoff),
        };
        // Saturating: a `Retry-After` of u64::MAX seconds is no retry, not a panic.
        let done = elapsed.saturating_add(wait).saturating_add(self.attempt);
        (done <= self.deadline).then_some(wait)
    }
}

/// One event's clock and ITSM tally, shared by the calls it makes.
pub struct Tally {
    started: Instant,
    calls: AtomicU32,
    micros: AtomicU64,
}

impl Tally {
    pub fn start() -> Tally {
        Tally {
            started: Instant::now(),
            calls: AtomicU32::new(0),
            micros: AtomicU64::new(0),
        }
    }

    /// ITSM requests made so far (retries included).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Milliseconds spent waiting for the ITSM so far.
    pub fn itsm_ms(&self) -> u64 {
        self.micros.load(Ordering::Relaxed) / 1000
    }
}

impl RetryPolicy {
    /// Runs an ITSM call (`call(n)` for retry `n`) again after transient
    /// failures, with jittered backoff, while a whole attempt still fits
    /// before the event's deadline.
    pub async fn run<T, F, Fut>(&self, tally: &Tally, mut call: F) -> Result<T, ItsmError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ItsmError>>,
    {
        let mut n = 0;
        loop {
            let begun = Instant::now();
            let result = call(n).await;
            tally.calls.fetch_add(1, Ordering::Relaxed);
            tally
                .micros
                .fetch_add(begun.elapsed().as_micros() as u64, Ordering::Relaxed);
            match result {
                Err(e) => {
                    n += 1;
                    let Some(wait) = self.wait(n, &e, tally.started.elapsed()) else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, retry = n, wait_ms = wait.as_millis() as u64, "ITSM call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                ok => return ok,
            }
        }
    }
}

/// Between half and all of `d`, so that concurrent retries spread out.
fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    d / 2 + d * u32::from(byte[0]) / 510
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stop_at_the_deadline() {
        let p = RetryPolicy::default();
        let down = ItsmError::Unavailable("503".into());
        let first = p.wait(1, &down, Duration::ZERO).unwrap();
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&first),
            "{first:?}"
        );
        let third = p.wait(3, &down, Duration::ZERO).unwrap();
        assert!(
            (Duration::from_millis(400)..=Duration::from_millis(800)).contains(&third),
            "{third:?}"
        );
        assert_eq!(
            p.wait(1, &down, Duration::from_secs(5)),
            None,
            "no whole attempt fits"
        );
        let rejected = ItsmError::Rejected {
            status: 400,
            message: "bad".into(),
        };
        assert_eq!(p.wait(1, &rejected, Duration::ZERO), None);
        let throttled = |s| ItsmError::Throttled {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            p.wait(1, &throttled(2), Duration::ZERO),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.wait(1, &throttled(7), Duration::ZERO),
            None,
            "Retry-After beyond the deadline"
        );
    }

    #[test]
    fn the_room_left_is_for_every_request_of_an_attempt() {
        let secs = Duration::from_secs;
        let down = ItsmError::Unavailable("503".into());
        let one = RetryPolicy::new(secs(8), secs(3), 1);
        let two = RetryPolicy::new(secs(8), secs(3), 2);
        assert_eq!((one.attempt, two.attempt), (secs(3), secs(6)));
        // 2 s in: one request still fits before 8 s, find and create do not.
        assert!(one.wait(1, &down, secs(2)).is_some());
        assert_eq!(two.wait(1, &down, secs(2)), None);
        assert!(two.wait(1, &down, Duration::ZERO).is_some());
        assert_eq!(RetryPolicy::new(secs(8), secs(3), 0).attempt, secs(3));
    }
}
