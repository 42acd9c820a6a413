//! One batch of queued notifications through the breaker: the worker's
//! SQS batch, or the whole outbox for `replay --drain`.
//!
//! - Breaker closed: each message is delivered in turn. The first that
//!   finds the ITSM down opens the breaker, and the rest of the batch goes
//!   back to the queue untried, to come back when the probe is due.
//! - Breaker open, probe not due: nothing is tried.
//! - Probe due: the batch takes it (one caller among all containers) and
//!   its first message that reaches the ITSM is the probe; if it goes
//!   through, the breaker closes and the batch goes on.
//! - A message of an alert whose earlier message failed in this batch is
//!   skipped, so that the alert's order holds.

use std::collections::HashSet;
use std::time::Duration;

use super::Delivery;
use super::worker::{Evidence, Fate, Received, WorkerPolicy};
use crate::domain::delivery::breaker::Gate;

/// A batch under way.
pub struct BatchRun<'a> {
    delivery: &'a Delivery,
    policy: &'a WorkerPolicy,
    failed_groups: HashSet<String>,
    /// The breaker holds the rest of the batch until then, for this reason.
    held: Option<(i64, String)>,
    /// This batch took the probe and has not yet reached the ITSM.
    probing: bool,
    /// A person asked for it: it tries the ITSM whatever others saw.
    person: bool,
}

impl Delivery {
    /// Starts a batch. `person` (a person ran `replay --drain`): the batch
    /// probes the ITSM now, whatever the breaker says.
    pub async fn batch<'a>(&'a self, policy: &'a WorkerPolicy, person: bool) -> BatchRun<'a> {
        let mut run = BatchRun {
            delivery: self,
            policy,
            failed_groups: HashSet::new(),
            held: None,
            probing: false,
            person,
        };
        match self.breaker.gate(true).await {
            // The batch's first message that reaches the ITSM is the probe.
            Gate::Closed => {}
            _ if person => {}
            Gate::ProbeDue if self.breaker.take_probe().await => run.probing = true,
            Gate::ProbeDue => run.held = Some(((self.clock)() + 1, "a probe is under way".into())),
            Gate::Open { until, why } => run.held = Some((until, why)),
        }
        run
    }
}

impl BatchRun<'_> {
    /// Why the breaker holds the rest of the batch, and until when (Unix
    /// seconds), once the ITSM is known to be down.
    pub fn held(&self) -> Option<&(i64, String)> {
        self.held.as_ref()
    }

    /// What becomes of the batch's next message.
    pub async fn next(&mut self, item: &Result<Received, String>) -> Fate {
        let d = self.delivery;
        let m = match item {
            Err(why) => return Fate::Parked(why.clone()),
            Ok(m) if self.failed_groups.contains(&m.group) => return Fate::Skipped,
            Ok(m) => m,
        };
        // Another container may have found the ITSM down since the batch
        // began: its view of the breaker (at most `view_secs` old) says so.
        if self.held.is_none()
            && !self.probing
            && !self.person
            && let Gate::Open { until, why } = d.breaker.gate(false).await
        {
            self.held = Some((until, why));
        }
        if let Some((until, why)) = &self.held {
            let after = Duration::from_secs((until - (d.clock)()).max(1) as u64);
            let why = format!("ITSM unavailable ({why}); held until the breaker's probe");
            let fate = d.not_now(m, self.policy, why, after).await;
            return self.note(m, fate);
        }
        let (fate, seen) = d.attempt(m, self.policy, self.probing).await;
        if seen != Evidence::None {
            self.probing = false;
        }
        let fate = match seen {
            Evidence::None => fate,
            Evidence::Up => {
                d.breaker.succeeded().await;
                fate
            }
            Evidence::Down(e) => {
                d.breaker.failed(&e).await;
                let until = match d.breaker.gate(false).await {
                    Gate::Open { until, .. } => until,
                    _ => (d.clock)() + d.breaker.policy().probe_secs,
                };
                self.held = Some((until, e.to_string()));
                // It comes back with the rest, when the probe is due.
                match fate {
                    Fate::Retry { why, .. } => Fate::Retry {
                        after: Duration::from_secs((until - (d.clock)()).max(1) as u64),
                        why,
                    },
                    other => other,
                }
            }
        };
        self.note(m, fate)
    }

    /// Ends the batch: a probe it took but never used is given back.
    pub async fn finish(self) {
        if self.probing {
            self.delivery.breaker.release_probe().await;
        }
    }

    fn note(&mut self, m: &Received, fate: Fate) -> Fate {
        if let Fate::Retry { .. } = fate {
            self.failed_groups.insert(m.group.clone());
        }
        fate
    }
}
