//! Store and forward. The webhook tries the ITSM inline within a short
//! budget; when the ITSM fails, or earlier notifications of the same alert
//! still wait in the delivery queue, the notification is queued instead and
//! Azure hears 202. The worker later delivers queued notifications, in
//! order, through the same state machine, so duplicates stay no-ops.
//!
//! Per-alert order rests on the record: `queued_seq` counts the alert's
//! queued notifications and `delivered_seq` the last one delivered; while
//! the first is ahead, every later notification queues behind. The record
//! is written before the message is sent, so a notification racing this one
//! sees the queued work even before the queue does.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::alert::Alert;
use super::correlation::{CorrelationRecord, RecordState, body_digest, correlation_key};
use super::outcome::{ProcessError, Processed};
use super::ports::{Clock, CorrelationStore, DeliveryQueue, QueuedNotification, StoreError};
use super::state_machine::Bridge;

/// Why a notification went to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueReason {
    /// The inline attempt failed (the ITSM is down, slow, throttling or refusing).
    ItsmFailed,
    /// An inline attempt failed moments ago: not tried again until the cool-down ends.
    CoolingDown,
    /// Earlier notifications of this alert are still queued.
    Behind,
    /// Azure delivered this notification again while it was still queued.
    AlreadyQueued,
}

impl QueueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueReason::ItsmFailed => "itsm_failed",
            QueueReason::CoolingDown => "cooling_down",
            QueueReason::Behind => "behind_queued",
            QueueReason::AlreadyQueued => "already_queued",
        }
    }
}

/// What the webhook did with a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Processed(Processed),
    /// Durably queued as its alert's notification `seq`.
    Queued {
        seq: u64,
        reason: QueueReason,
    },
}

pub struct Delivery {
    /// The state machine for inline attempts: its retry deadline is the inline budget.
    inline: Bridge,
    /// The state machine for queued deliveries: a longer deadline.
    worker: Bridge,
    queue: Arc<dyn DeliveryQueue>,
    store: Arc<dyn CorrelationStore>,
    clock: Clock,
    cooldown_secs: i64,
    /// Unix seconds until which this container skips inline attempts.
    skip_inline_until: AtomicI64,
}

/// Rounds of conditional writes before contention is answered "retry later".
const ROUNDS: usize = 4;

impl Delivery {
    pub fn new(
        inline: Bridge,
        worker: Bridge,
        queue: Arc<dyn DeliveryQueue>,
        cooldown_secs: i64,
        clock: Clock,
    ) -> Delivery {
        Delivery {
            store: inline.store(),
            inline,
            worker,
            queue,
            clock,
            cooldown_secs,
            skip_inline_until: AtomicI64::new(0),
        }
    }

    /// The webhook's way in: inline when it can be, else queued. A success
    /// means the notification was processed or is durably queued.
    ///
    /// # Errors
    /// `Store` or `Queue` when it could be neither processed nor queued
    /// (nothing durable holds it: the sender must retry); `InProgress` when
    /// another delivery of the alert holds it right now (queuing this one
    /// could put it ahead of that one).
    pub async fn accept(&self, alert: &Alert, body: &[u8]) -> Result<Accepted, ProcessError> {
        if (self.clock)() < self.skip_inline_until.load(Ordering::Relaxed) {
            return self
                .enqueue(alert, body, None, QueueReason::CoolingDown)
                .await;
        }
        match self.inline.process_unless_queued(alert).await {
            Ok(processed) => Ok(Accepted::Processed(processed)),
            Err(ProcessError::Behind(record)) => {
                self.enqueue(alert, body, Some(*record), QueueReason::Behind)
                    .await
            }
            Err(ProcessError::Itsm(e)) => {
                let until = (self.clock)() + self.cooldown_secs;
                self.skip_inline_until.fetch_max(until, Ordering::Relaxed);
                tracing::warn!(error = %e, alert_id = ?alert.alert_id, cooldown_secs = self.cooldown_secs, "ITSM failed inline; queuing");
                self.enqueue(alert, body, None, QueueReason::ItsmFailed)
                    .await
            }
            Err(other) => Err(other),
        }
    }

    /// The worker's way in: delivers queued notification `seq` of its alert.
    /// Safe to repeat: a repeat is a duplicate for the state machine.
    ///
    /// The queue hands an alert's notifications over in order, but the
    /// record is the authority: with `in_order`, a notification whose
    /// predecessor is not delivered yet waits (`Behind`). The caller stops
    /// waiting (`in_order` false) once it has waited long enough for a
    /// predecessor that may never come (a queuing whose take-back failed).
    ///
    /// # Errors
    /// `Behind`, or what the state machine says; the notification stays queued.
    pub async fn deliver(
        &self,
        alert: &Alert,
        seq: u64,
        in_order: bool,
    ) -> Result<Processed, ProcessError> {
        if in_order
            && let Some(record) = self.store.get(&alert.alert_id, (self.clock)()).await?
            && seq > record.delivered_seq + 1
        {
            return Err(ProcessError::Behind(Box::new(record)));
        }
        let processed = self.worker.process(alert).await?;
        self.mark_delivered(&alert.alert_id, seq).await?;
        Ok(processed)
    }

    /// The state machine queued deliveries go through.
    pub fn worker(&self) -> &Bridge {
        &self.worker
    }

    async fn enqueue(
        &self,
        alert: &Alert,
        body: &[u8],
        known: Option<CorrelationRecord>,
        reason: QueueReason,
    ) -> Result<Accepted, ProcessError> {
        let digest = body_digest(body);
        let mut known = known.map(Some);
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let current = match known.take() {
                Some(record) => record,
                None => self.store.get(&alert.alert_id, now).await?,
            };
            if let Some(r) = &current
                && r.queued_digest.as_deref() == Some(digest.as_str())
            {
                // Azure sent the last queued notification again (a retry after
                // a lost answer): it is queued, or was and has been delivered.
                let reason = QueueReason::AlreadyQueued;
                return Ok(Accepted::Queued {
                    seq: r.queued_seq,
                    reason,
                });
            }
            let next = self.queued(alert, current.as_ref(), &digest, now);
            match self
                .store
                .put(&next, current.as_ref().map(|r| r.version), now)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict(found)) => {
                    known = Some(found.map(|r| *r));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            // The alert's own key, whatever key its current incident has (a
            // refire under `new` gets another): one group per alert.
            let group = correlation_key(&alert.alert_id);
            let notification = QueuedNotification {
                alert_id: &alert.alert_id,
                group: &group,
                seq: next.queued_seq,
                digest: &digest,
                body,
            };
            if let Err(e) = self.queue.send(&notification).await {
                self.unqueue(next, current, now).await;
                return Err(e.into());
            }
            return Ok(Accepted::Queued {
                seq: next.queued_seq,
                reason,
            });
        }
        Err(ProcessError::InProgress)
    }

    /// The record after queuing one more notification of `alert`.
    fn queued(
        &self,
        alert: &Alert,
        current: Option<&CorrelationRecord>,
        digest: &str,
        now: i64,
    ) -> CorrelationRecord {
        let mut next = match current {
            Some(r) => {
                let mut next = r.clone();
                next.version = r.version + 1;
                next.updated_at = now;
                next
            }
            None => self
                .inline
                .next(None, alert, RecordState::Queued, None, now),
        };
        next.queued_seq = current.map_or(0, |r| r.queued_seq) + 1;
        next.queued_at = now;
        next.queued_digest = Some(digest.to_string());
        next
    }

    /// Takes a queuing back whose message could not be sent, so that the
    /// alert does not wait for it. If this write fails too, the alert's later
    /// notifications queue until one is delivered: slower, never out of order.
    async fn unqueue(
        &self,
        next: CorrelationRecord,
        previous: Option<CorrelationRecord>,
        now: i64,
    ) {
        let back = match previous {
            Some(mut r) => {
                r.version = next.version + 1;
                r.updated_at = now;
                r
            }
            // Nothing was known of the alert: a record that holds nothing back.
            None => {
                let mut r = next.clone();
                r.version = next.version + 1;
                r.queued_seq = 0;
                r.queued_digest = None;
                r
            }
        };
        if let Err(e) = self.store.put(&back, Some(next.version), now).await {
            tracing::warn!(error = %e, alert_id = ?next.alert_id, "could not take back a queuing whose message was not sent");
        }
    }

    /// Records that notification `seq` of the alert was delivered.
    async fn mark_delivered(&self, alert_id: &str, seq: u64) -> Result<(), ProcessError> {
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let Some(mut record) = self.store.get(alert_id, now).await? else {
                return Ok(());
            };
            if record.delivered_seq >= seq {
                return Ok(());
            }
            let expected = record.version;
            record.delivered_seq = seq;
            record.version += 1;
            record.updated_at = now;
            match self.store.put(&record, Some(expected), now).await {
                Err(StoreError::Conflict(_)) => continue,
                other => return other.map_err(Into::into),
            }
        }
        Err(ProcessError::InProgress)
    }
}

#[cfg(test)]
mod tests;
