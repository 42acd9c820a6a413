//! The breaker's ports: where every role sees whether the ITSM is down, and
//! the queue's consumer, which a long outage pauses.

use async_trait::async_trait;

use super::StoreError;

/// The ITSM's circuit breaker as stored: one per ITSM kind, shared by the
/// webhook, the worker, the scheduled round and `replay`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BreakerState {
    /// The ITSM kind (`servicenow`, …).
    pub name: String,
    /// Unix seconds when this outage was first seen; 0 while the ITSM is up.
    pub down_since: i64,
    /// While down, no ITSM call before this but the probe's (Unix seconds).
    pub next_probe: i64,
    /// A probe is under way until then; nobody else probes meanwhile.
    pub probing_until: i64,
    /// Failed probes in a row: they space the next one.
    pub failures: u32,
    /// The failure that opened or last extended it (no secrets: an
    /// `ItsmError`'s text).
    pub why: String,
    /// Written only conditionally on this.
    pub version: u64,
}

#[async_trait]
pub trait BreakerStore: Send + Sync {
    /// The breaker called `name`, if it was ever written. Read consistently.
    ///
    /// # Errors
    /// `Unavailable` only.
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError>;

    /// Writes `state` if the stored one's version is `expected` (`None`:
    /// none stored).
    ///
    /// # Errors
    /// `Conflict(None)` when the version differs, `Unavailable` otherwise.
    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError>;
}

/// The queue's consumer could not be paused, resumed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue consumer: {0}")]
pub struct IntakeError(pub String);

/// What hands queued notifications to the worker: on AWS, the worker's
/// SQS event source mapping. Paused, it receives nothing (no invocations,
/// no receive counts spent) while the messages wait in the queue.
#[async_trait]
pub trait Intake: Send + Sync {
    /// Whether it is paused (or pausing).
    async fn paused(&self) -> Result<bool, IntakeError>;
    /// Stops handing over messages. Idempotent.
    async fn pause(&self) -> Result<(), IntakeError>;
    /// Hands over messages again. Idempotent.
    async fn resume(&self) -> Result<(), IntakeError>;
}
