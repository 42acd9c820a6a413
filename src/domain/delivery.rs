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

use crate::domain::alert::Alert;
use crate::domain::correlation::{CorrelationRecord, RecordState, body_digest, correlation_key};
use crate::domain::delivery::breaker::{Breaker, Gate};
use crate::domain::outcome::{ProcessError, Processed};
use crate::domain::ports::{
    Clock, CorrelationStore, DeliveryQueue, ItsmError, QueuedNotification, StoreError,
};
use crate::domain::state_machine::Bridge;

/// Why a notification went to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueReason {
    /// The inline attempt failed (the ITSM is down, slow, throttling or refusing).
    ItsmFailed,
    /// The ITSM is down (its breaker is open): not tried until a probe finds it back.
    ItsmDown,
    /// Earlier notifications of this alert are still queued.
    Behind,
    /// Azure delivered this notification again while it was still queued.
    AlreadyQueued,
    /// The inline attempt waited on the bridge's own state, not the ITSM
    /// (a grouped alert's parent incident still being created by another
    /// attempt): the worker delivers it shortly.
    Busy,
}

impl QueueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueReason::ItsmFailed => "itsm_failed",
            QueueReason::ItsmDown => "itsm_down",
            QueueReason::Behind => "behind_queued",
            QueueReason::AlreadyQueued => "already_queued",
            QueueReason::Busy => "busy",
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
        /// What the ITSM answered (`ItsmFailed`), or why it is held to be
        /// down (`ItsmDown`): the operator's first question.
        failure: Option<ItsmError>,
    },
}

impl Accepted {
    /// A queued answer that names the ITSM's failure.
    fn failed(self, e: ItsmError) -> Accepted {
        match self {
            Accepted::Queued { seq, reason, .. } => Accepted::Queued {
                seq,
                reason,
                failure: Some(e),
            },
            processed => processed,
        }
    }
}

pub struct Delivery {
    /// The state machine for inline attempts: its retry deadline is the inline budget.
    inline: Bridge,
    /// The state machine for queued deliveries: a longer deadline.
    worker: Bridge,
    queue: Arc<dyn DeliveryQueue>,
    store: Arc<dyn CorrelationStore>,
    clock: Clock,
    /// Whether the ITSM is down, as every role sees it.
    breaker: Arc<Breaker>,
}

/// Rounds of conditional writes before contention is answered "retry later".
const ROUNDS: usize = 4;

impl Delivery {
    pub fn new(
        inline: Bridge,
        worker: Bridge,
        queue: Arc<dyn DeliveryQueue>,
        breaker: Arc<Breaker>,
        clock: Clock,
    ) -> Delivery {
        Delivery {
            store: inline.store(),
            inline,
            worker,
            queue,
            clock,
            breaker,
        }
    }

    /// The ITSM's breaker, as this delivery sees it.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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
        // While the ITSM is down, queue at once; a due probe is taken by
        // whoever comes first, this notification's inline attempt included.
        let probing = match self.breaker.gate(false).await {
            Gate::Closed => false,
            Gate::ProbeDue if self.breaker.take_probe().await => true,
            held => {
                let why = match held {
                    Gate::Open { why, .. } => why,
                    _ => "it was down; another delivery is probing whether it is back".into(),
                };
                let queued = self.enqueue(alert, body, None, QueueReason::ItsmDown).await;
                // The breaker keeps the failure as it read: said once, not
                // "ITSM unavailable: ITSM unavailable: …".
                let why = why
                    .strip_prefix("ITSM unavailable: ")
                    .map_or(why.clone(), str::to_string);
                return queued.map(|q| q.failed(ItsmError::Unavailable(why)));
            }
        };
        let attempt = self.inline.process_unless_queued(alert).await;
        let called = match &attempt {
            Ok(processed) => processed.itsm_calls > 0,
            // Waiting for a group's parent says nothing of the ITSM.
            Err(e) => matches!(e, ProcessError::Itsm(e) if !matches!(e, ItsmError::Busy(_))),
        };
        if probing && !called {
            self.breaker.release_probe().await;
        }
        match attempt {
            Ok(processed) => {
                if called {
                    self.breaker.succeeded().await;
                }
                Ok(Accepted::Processed(processed))
            }
            Err(ProcessError::Behind(record)) => {
                self.enqueue(alert, body, Some(*record), QueueReason::Behind)
                    .await
            }
            Err(ProcessError::Itsm(e)) => {
                if e.is_transient() {
                    self.breaker.failed(&e).await;
                } else {
                    // A refusal is an answer: the ITSM is up.
                    self.breaker.succeeded().await;
                }
                let reason = match e {
                    ItsmError::Busy(_) => QueueReason::Busy,
                    _ => QueueReason::ItsmFailed,
                };
                tracing::warn!(error = %e, alert_id = ?alert.alert_id, reason = reason.as_str(), "not delivered inline; queuing");
                let queued = self.enqueue(alert, body, None, reason).await;
                queued.map(|q| q.failed(e))
            }
            Err(other) => Err(other),
        }
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
            let again = match &current {
                // Its last number may still be on its way to the queue:
                // this one must not be sent past it, nor be sent twice.
                Some(r) if r.sending(now) => return Err(ProcessError::InProgress),
                Some(r) if r.queued_digest.as_deref() == Some(digest.as_str()) => {
                    if r.queue.sent_seq >= r.queued_seq || r.delivered_seq >= r.queued_seq {
                        // Azure sent the last queued notification again (a
                        // retry after a lost answer): it is in the queue, or
                        // was and has been delivered.
                        let reason = QueueReason::AlreadyQueued;
                        return Ok(Accepted::Queued {
                            seq: r.queued_seq,
                            reason,
                            failure: None,
                        });
                    }
                    // Its queuing was never confirmed (the send failed, or
                    // its sender died): send it again, same number, same
                    // deduplication id.
                    true
                }
                // The inline path answers "in progress" to an alert that an
                // attempt holds; queuing must not jump that attempt either.
                Some(r)
                    if r.state == RecordState::Claimed
                        && r.lease_until > now
                        && !r.has_queued_work(now, self.inline.settings().queue_horizon_secs) =>
                {
                    return Err(ProcessError::InProgress);
                }
                _ => false,
            };
            let mut next = match &current {
                Some(r) if again => {
                    let mut next = r.clone();
                    next.version = r.version + 1;
                    next.updated_at = now;
                    next
                }
                _ => self.queued(alert, current.as_ref(), &digest, now),
            };
            next.queue.send_lease_until = now + self.inline.settings().lease_secs;
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
            let seq = next.queued_seq;
            let notification = QueuedNotification {
                alert_id: &alert.alert_id,
                group: &group,
                seq,
                digest: &digest,
                body,
            };
            if let Err(e) = self.queue.send(&notification).await {
                // The number stays taken: the message may have got in (an
                // answer lost). Azure's retry sends it again; a later
                // notification goes on after it.
                self.settle(&alert.alert_id, seq, false).await;
                return Err(e.into());
            }
            self.settle(&alert.alert_id, seq, true).await;
            let reason = if again {
                QueueReason::AlreadyQueued
            } else {
                reason
            };
            return Ok(Accepted::Queued {
                seq,
                reason,
                failure: None,
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
        // The number before, if its send was never confirmed, was abandoned
        // (its lease ran out): if it got into the queue, it is ahead.
        next.queue.sent_seq = next.queued_seq - 1;
        next.queued_at = now;
        next.queued_digest = Some(digest.to_string());
        next
    }

    /// Ends the send of number `seq`: confirmed in the queue (`sent`), or
    /// not, so that a later notification need not wait for its lease. If
    /// this write fails, the lease runs out by itself.
    async fn settle(&self, alert_id: &str, seq: u64, sent: bool) {
        let settled = self
            .update(alert_id, |r| {
                if sent && r.queue.sent_seq < seq {
                    r.queue.sent_seq = seq;
                } else if r.queue.send_lease_until == 0 || r.queued_seq != seq {
                    return None;
                }
                if r.queued_seq == seq {
                    r.queue.send_lease_until = 0;
                }
                Some(())
            })
            .await;
        if let Err(e) = settled {
            tracing::warn!(error = %e, alert_id = ?alert_id, seq, sent, "could not record the end of a queuing; its lease runs out by itself");
        }
    }
}

mod batch;
pub mod breaker;
mod worker;
pub use batch::BatchRun;
pub use worker::{Fate, Received, WorkerPolicy};

#[cfg(test)]
mod tests;
