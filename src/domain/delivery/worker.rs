//! The worker's rules for queued notifications, whatever queue hands them
//! over (SQS FIFO in AWS, the outbox locally, the simulation's double):
//! what becomes of each message of a batch.
//!
//! - The queue hands an alert's notifications over in number order (the
//!   webhook sends number N+1 only once N is in the queue or its sender's
//!   lease ran out), so a gap before a message is a number that never
//!   reached the queue: nothing waits for it.
//! - A number already delivered is a copy (a send repeated after a lost
//!   answer, a redrive of something delivered since): deleted, not sent.
//! - The ITSM's refusals (4xx) are counted per notification in the record,
//!   not by receives: receives during an outage or behind a failing
//!   predecessor say nothing about whether the ITSM refuses this one.
//! - A notification refused `permanent_attempts` times in a row is parked
//!   (the dead-letter queue) with the reason, and its alert's later
//!   notifications park behind it, in order, until it is redriven: after
//!   the cause is fixed, a redrive delivers them all, in order, and the
//!   alert ends as if nothing had happened.

use std::time::Duration;

use super::Delivery;
use crate::domain::alert::Alert;
use crate::domain::correlation::{CorrelationRecord, PARKED_HORIZON_SECS};
use crate::domain::outcome::{ProcessError, Processed};
use crate::domain::ports::{ItsmError, StoreError};

/// The worker's pacing and patience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPolicy {
    /// Refusals in a row before a notification is parked.
    pub permanent_attempts: u32,
    /// A failed delivery comes back after base × 2^(receives − 1), at most max.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// The queue's redrive policy (maxReceiveCount): a message still
    /// failing on this receive is parked by the worker, so that the record
    /// knows and the alert's later notifications park behind it, rather
    /// than SQS moving it unseen and the later ones going past it.
    pub max_receives: Option<u32>,
}

impl Default for WorkerPolicy {
    fn default() -> Self {
        WorkerPolicy {
            permanent_attempts: 3,
            backoff_base_secs: 30,
            backoff_max_secs: 1800,
            max_receives: None,
        }
    }
}

impl WorkerPolicy {
    /// How long to leave a notification in the queue after its `receives`th
    /// failed delivery (1 for the first), or as long as the ITSM asked.
    pub fn backoff(&self, receives: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff_base_secs
            .saturating_mul(1 << receives.saturating_sub(1).min(20));
        let secs = retry_after
            .map_or(exp, |d| d.as_secs().max(1))
            .min(self.backoff_max_secs);
        Duration::from_secs(secs)
    }
}

/// One queued notification as the worker receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub alert: Alert,
    /// Its number among its alert's queued notifications.
    pub seq: u64,
    /// Its message group (the alert's correlation key).
    pub group: String,
    /// How many times the queue has handed it over, this time included.
    pub receives: u32,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Delivered(Processed),
    /// Delivered before (a copy): nothing was sent; delete it.
    AlreadyDelivered,
    /// To the dead-letter queue with the reason (the original is deleted).
    Parked(String),
    /// Not delivered now: it comes back after `after`.
    Retry {
        after: Duration,
        why: String,
    },
    /// An earlier message of its alert failed in this batch: back at once,
    /// unprocessed, so that the alert's order holds.
    Skipped,
}

impl Fate {
    /// Whether the message leaves the queue (deleted, or parked).
    pub fn done(&self) -> bool {
        matches!(
            self,
            Fate::Delivered(_) | Fate::AlreadyDelivered | Fate::Parked(_)
        )
    }
}

/// What one delivery showed of the ITSM, for its breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// No ITSM call was made (a copy, a park, the store failing).
    None,
    /// The ITSM answered (a refusal included).
    Up,
    /// The ITSM failed transiently: it is down.
    Down(ItsmError),
}

/// Rounds of conditional writes before contention is answered "retry later".
const ROUNDS: usize = 4;

impl Delivery {
    /// Delivers a batch in order, message by message; what became of each.
    /// An `Err` stands for a message that is not a notification this bridge
    /// queued: parked with its reason (no retry can help). While the ITSM
    /// is down (its breaker open), no message is tried: each goes back to
    /// the queue until the probe is due.
    pub async fn deliver_batch(
        &self,
        batch: &[Result<Received, String>],
        policy: &WorkerPolicy,
    ) -> Vec<Fate> {
        let mut run = self.batch(policy, false).await;
        let mut fates = Vec::with_capacity(batch.len());
        for item in batch {
            fates.push(run.next(item).await);
        }
        run.finish().await;
        fates
    }

    /// What becomes of one queued notification, breaker aside.
    pub async fn deliver_queued(&self, m: &Received, policy: &WorkerPolicy) -> Fate {
        self.attempt(m, policy, false).await.0
    }

    /// One queued notification's fate, and what its delivery showed of the
    /// ITSM. `probe`: the breaker's probe, one attempt with no retries.
    pub(super) async fn attempt(
        &self,
        m: &Received,
        policy: &WorkerPolicy,
        probe: bool,
    ) -> (Fate, Evidence) {
        let retry = async |e: &ProcessError| {
            let retry_after = match e {
                ProcessError::Itsm(ItsmError::Throttled { retry_after, .. }) => *retry_after,
                _ => None,
            };
            let after = policy.backoff(m.receives, retry_after);
            self.not_now(m, policy, e.to_string(), after).await
        };
        let delivered = if probe {
            self.deliver_by(&self.worker.without_retries(), &m.alert, m.seq)
                .await
        } else {
            self.deliver(&m.alert, m.seq).await
        };
        match delivered {
            Ok(Some(processed)) => {
                let seen = if processed.itsm_calls > 0 {
                    Evidence::Up
                } else {
                    Evidence::None
                };
                (Fate::Delivered(processed), seen)
            }
            Ok(None) => (Fate::AlreadyDelivered, Evidence::None),
            Err(ProcessError::Behind(r)) => {
                let first = r.queue.parked.first().copied().unwrap_or_default();
                let fate = match self.park(&m.alert.alert_id, m.seq).await {
                    Ok(()) => Fate::Parked(format!(
                        "notification {first} of this alert is parked; this one waits behind it \
                         (redrive the dead-letter queue once its cause is fixed)"
                    )),
                    Err(store) => retry(&store).await,
                };
                (fate, Evidence::None)
            }
            Err(ProcessError::Itsm(e @ ItsmError::Rejected { .. })) => {
                let fate = match self.refused(&m.alert.alert_id, m.seq, policy).await {
                    Ok(true) => Fate::Parked(e.to_string()),
                    Ok(false) => retry(&ProcessError::Itsm(e)).await,
                    Err(store) => retry(&store).await,
                };
                (fate, Evidence::Up)
            }
            // Waiting on the bridge's own state (a group's parent being
            // made): says nothing of the ITSM, holds nothing else back.
            Err(ProcessError::Itsm(e @ ItsmError::Busy(_))) => {
                (retry(&ProcessError::Itsm(e)).await, Evidence::None)
            }
            Err(ProcessError::Itsm(e)) => {
                let fate = retry(&ProcessError::Itsm(e.clone())).await;
                (fate, Evidence::Down(e))
            }
            Err(e) => (retry(&e).await, Evidence::None),
        }
    }

    /// A notification not delivered now: back after `after`, or, on the
    /// queue's last receive, parked (so that the record knows and its
    /// alert's later notifications park behind it).
    pub(super) async fn not_now(
        &self,
        m: &Received,
        policy: &WorkerPolicy,
        why: String,
        after: Duration,
    ) -> Fate {
        let last = policy.max_receives.is_some_and(|n| m.receives >= n);
        if !last {
            return Fate::Retry { after, why };
        }
        match self.park(&m.alert.alert_id, m.seq).await {
            Ok(()) => Fate::Parked(format!(
                "still not delivered after {} receives: {why}",
                m.receives
            )),
            Err(store) => Fate::Retry {
                after: policy.backoff(m.receives, None),
                why: format!("{why}; and recording its park failed: {store}"),
            },
        }
    }

    /// Delivers queued notification `seq` of its alert: `None` when it was
    /// delivered before. Safe to repeat.
    ///
    /// # Errors
    /// `Behind` (carrying the record) when an earlier notification of the
    /// alert is parked; else what the state machine says. Either way the
    /// notification is not delivered.
    pub async fn deliver(
        &self,
        alert: &Alert,
        seq: u64,
    ) -> Result<Option<Processed>, ProcessError> {
        self.deliver_by(&self.worker, alert, seq).await
    }

    /// [`Delivery::deliver`] through `bridge`.
    async fn deliver_by(
        &self,
        bridge: &crate::domain::state_machine::Bridge,
        alert: &Alert,
        seq: u64,
    ) -> Result<Option<Processed>, ProcessError> {
        let now = (self.clock)();
        if let Some(record) = self.store.get(&alert.alert_id, now).await? {
            if seq <= record.delivered_seq && !record.queue.parked.contains(&seq) {
                return Ok(None);
            }
            if record.parked_before(seq, now, PARKED_HORIZON_SECS) {
                return Err(ProcessError::Behind(Box::new(record)));
            }
        }
        let processed = bridge.process(alert).await?;
        self.update(&alert.alert_id, |r| {
            let parked = r.queue.parked.contains(&seq);
            (r.delivered_seq < seq || parked).then(|| {
                r.delivered_seq = r.delivered_seq.max(seq);
                r.queue.parked.retain(|p| *p != seq);
                if r.queue.refused_seq <= seq {
                    r.queue.refusals = 0;
                }
            })
        })
        .await?;
        Ok(Some(processed))
    }

    /// Counts a refusal of notification `seq`; whether it is now to be
    /// parked (then recorded as parked, so that later ones park behind it).
    async fn refused(
        &self,
        alert_id: &str,
        seq: u64,
        policy: &WorkerPolicy,
    ) -> Result<bool, ProcessError> {
        let now = (self.clock)();
        let mut park = false;
        self.update(alert_id, |r| {
            let refusals = if r.queue.refused_seq == seq {
                r.queue.refusals + 1
            } else {
                1
            };
            park = refusals >= policy.permanent_attempts;
            r.queue.refused_seq = seq;
            r.queue.refusals = if park { 0 } else { refusals };
            if park {
                r.park(seq, now);
            }
            Some(())
        })
        .await?;
        Ok(park)
    }

    /// Records notification `seq` as parked, so that its alert's later
    /// notifications park behind it and it is never taken for a copy.
    async fn park(&self, alert_id: &str, seq: u64) -> Result<(), ProcessError> {
        let now = (self.clock)();
        self.update(alert_id, |r| {
            if r.queue.parked.contains(&seq) {
                return None;
            }
            r.park(seq, now);
            Some(())
        })
        .await
    }

    /// Applies `change` to the alert's record (nothing when it returns
    /// `None`, or there is no record), conditionally, reading again when
    /// another write came first.
    pub(super) async fn update(
        &self,
        alert_id: &str,
        mut change: impl FnMut(&mut CorrelationRecord) -> Option<()>,
    ) -> Result<(), ProcessError> {
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let Some(mut record) = self.store.get(alert_id, now).await? else {
                return Ok(());
            };
            let expected = record.version;
            if change(&mut record).is_none() {
                return Ok(());
            }
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
