//! The scheduled round's part in the breaker: while the ITSM is down it
//! pauses the queue's consumer (no invocations, no receive counts spent
//! while nothing can be delivered) and makes the due probe; once a probe
//! succeeds it resumes the consumer, so the backlog flows within one
//! round of the ITSM coming back. A consumer left paused by a crash, or
//! by a breaker closed elsewhere, is resumed by the next round.

use super::{Breaker, Gate};
use crate::domain::ports::{Intake, ItsmClient};

/// The correlation key the probe looks for: a read that matches nothing
/// and changes nothing, answered by the same path a create's recovery uses.
pub const PROBE_KEY: &str = "itsm-bridge-probe";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The ITSM is up: nothing to probe.
    Up,
    /// Down, and the probe is not due (or another caller holds it).
    NotDue { until: i64 },
    /// The probe went through: the breaker is closed.
    Recovered,
    /// The probe failed: still down.
    StillDown(String),
    /// The breaker could not be read: nothing was decided.
    Unknown,
}

/// What one round did about the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub outcome: ProbeOutcome,
    /// Unix seconds the outage began (0 when up).
    pub down_since: i64,
    /// Whether the queue's consumer is paused after the round (`None`: no
    /// consumer to steer, or it could not be read).
    pub intake_paused: Option<bool>,
}

impl Breaker {
    /// One round: probe when due, and steer `intake` by the breaker.
    pub async fn round(&self, itsm: &dyn ItsmClient, intake: Option<&dyn Intake>) -> ProbeReport {
        let now = (self.clock)();
        let Some(state) = self.state(true).await else {
            let intake_paused = match intake {
                Some(intake) => steer(intake, false).await,
                None => None,
            };
            return ProbeReport {
                outcome: ProbeOutcome::Unknown,
                down_since: 0,
                intake_paused,
            };
        };
        let mut down_since = state.down_since;
        let outcome = match state.gate(now) {
            Gate::Closed => ProbeOutcome::Up,
            Gate::Open { until, .. } => ProbeOutcome::NotDue { until },
            Gate::ProbeDue if !self.take_probe().await => ProbeOutcome::NotDue { until: now },
            Gate::ProbeDue => match itsm.find(PROBE_KEY).await {
                // A refusal is an answer: the ITSM is up; what it refuses,
                // the worker's refusal rule deals with message by message.
                Err(e) if super::is_outage(&e) => {
                    self.failed(&e).await;
                    ProbeOutcome::StillDown(e.to_string())
                }
                _ => {
                    self.succeeded().await;
                    down_since = 0;
                    ProbeOutcome::Recovered
                }
            },
        };
        // A breaker that cannot be read is taken as closed, here as by every
        // other role: the consumer runs.
        let want_paused = matches!(
            outcome,
            ProbeOutcome::NotDue { .. } | ProbeOutcome::StillDown(_)
        );
        let intake_paused = match intake {
            Some(intake) => steer(intake, want_paused).await,
            None => None,
        };
        ProbeReport {
            outcome,
            down_since,
            intake_paused,
        }
    }
}

/// Pauses or resumes `intake` unless it already is; whether it is paused after.
async fn steer(intake: &dyn Intake, pause: bool) -> Option<bool> {
    let paused = match intake.paused().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the queue's consumer state");
            return None;
        }
    };
    if paused == pause {
        return Some(paused);
    }
    let done = if pause {
        intake.pause().await
    } else {
        intake.resume().await
    };
    match done {
        Ok(()) => {
            if pause {
                tracing::warn!("ITSM down: queue consumer paused until a probe finds it back");
            } else {
                tracing::info!("queue consumer resumed: the backlog flows");
            }
            Some(pause)
        }
        Err(e) => {
            tracing::error!(error = %e, pause, "cannot steer the queue's consumer; the next round tries again");
            Some(paused)
        }
    }
}
