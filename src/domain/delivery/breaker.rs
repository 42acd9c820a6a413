//! The ITSM's circuit breaker: once any role sees the ITSM down, every
//! role stops calling it until a single probe finds it back.
//!
//! - Closed: calls go through. The first transient failure (unreachable,
//!   unanswered, 5xx, 429, hibernating) opens it, with the next probe one
//!   interval on, or when the ITSM's `Retry-After` says.
//! - Open: no calls. The webhook queues at once, the worker hands its batch
//!   back to the queue untried, the scheduled round pauses the queue's
//!   consumer. Once the probe is due, one caller takes it (a conditional
//!   write) and makes one call: a success closes the breaker (and the
//!   round resumes the consumer); a failure opens it for another interval,
//!   doubling up to the most.
//!
//! The breaker only decides whether to call: every guarantee of delivery
//! rests on the records and the queue, so a breaker that cannot be read is
//! taken as closed, and one that cannot be written costs calls, nothing else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::ports::{BreakerState, BreakerStore, Clock, ItsmError, StoreError};

/// How the breaker paces its probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// The first probe comes this long (seconds) after the failure that opened it.
    pub probe_secs: i64,
    /// Each failed probe doubles the interval, up to this.
    pub probe_max_secs: i64,
    /// How long a view of the breaker is trusted by the webhook (which reads
    /// it for every event): a change reaches it within this.
    pub view_secs: i64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            probe_secs: 60,
            probe_max_secs: 60,
            view_secs: 5,
        }
    }
}

/// Whether to call the ITSM now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Up (as far as anyone knows): call it.
    Closed,
    /// Down, and its probe is due: whoever takes it ([`Breaker::take_probe`]) calls.
    ProbeDue,
    /// Down: no call before `until` (Unix seconds).
    Open { until: i64, why: String },
}

/// The longest a probe holds the breaker: one ITSM call and its write.
pub const PROBE_LEASE_SECS: i64 = 60;

/// The longest wait the breaker sets: the most a `Retry-After` is honoured
/// (ServiceNow's rate limit rules count per hour) and above any probe
/// interval (`BREAKER_PROBE_MAX_SECS` is at most an hour). A stored time
/// further away than this was written by a clock that stepped ahead: the
/// probe is due now.
pub const LONGEST_WAIT_SECS: i64 = 3600;

impl BreakerState {
    pub fn is_open(&self) -> bool {
        self.down_since > 0
    }

    pub fn gate(&self, now: i64) -> Gate {
        if !self.is_open() {
            return Gate::Closed;
        }
        // Times no clock of ours could have set: a clock that stepped ahead.
        let next_probe = if self.next_probe > now + LONGEST_WAIT_SECS {
            now
        } else {
            self.next_probe
        };
        let probing_until = if self.probing_until > now + PROBE_LEASE_SECS {
            now
        } else {
            self.probing_until
        };
        let until = next_probe.max(probing_until);
        if until <= now {
            Gate::ProbeDue
        } else {
            Gate::Open {
                until,
                why: self.why.clone(),
            }
        }
    }

    /// After a transient failure at `now`: open, with the next probe one
    /// interval on, or after `retry_after` when the ITSM said so (at most an
    /// hour); once open (a failed probe), after the longer of the two, so
    /// that a 429 storm with `Retry-After: 0` still costs one probe per
    /// interval.
    pub fn tripped(
        &self,
        now: i64,
        why: &str,
        retry_after: Option<Duration>,
        policy: &BreakerPolicy,
    ) -> BreakerState {
        let failures = if self.is_open() {
            self.failures.saturating_add(1)
        } else {
            0
        };
        let interval = policy
            .probe_secs
            .saturating_mul(1 << failures.min(16))
            .min(policy.probe_max_secs.max(policy.probe_secs));
        let asked = retry_after.map(|d| {
            i64::try_from(d.as_secs())
                .unwrap_or(i64::MAX)
                .clamp(1, LONGEST_WAIT_SECS)
        });
        let wait = match asked {
            Some(asked) if self.is_open() => asked.max(interval),
            Some(asked) => asked,
            None => interval,
        };
        BreakerState {
            name: self.name.clone(),
            down_since: if self.is_open() { self.down_since } else { now },
            next_probe: now.saturating_add(wait),
            probing_until: 0,
            failures,
            why: why.to_string(),
            version: self.version + 1,
        }
    }

    /// Taken for a probe at `now`: nobody else probes until it ends.
    pub fn probing(&self, now: i64) -> BreakerState {
        BreakerState {
            probing_until: now + PROBE_LEASE_SECS,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// After a call that went through.
    pub fn recovered(&self) -> BreakerState {
        BreakerState {
            name: self.name.clone(),
            version: self.version + 1,
            ..BreakerState::default()
        }
    }
}

/// Whether a failure says the ITSM is down (rather than refusing this request).
pub fn is_outage(e: &ItsmError) -> bool {
    e.is_transient() && !matches!(e, ItsmError::Busy(_))
}

/// A role's handle on the shared breaker.
pub struct Breaker {
    store: Arc<dyn BreakerStore>,
    name: String,
    clock: Clock,
    policy: BreakerPolicy,
    /// The last state read or written, and when.
    view: Mutex<Option<(i64, BreakerState)>>,
}

impl Breaker {
    pub fn new(
        store: Arc<dyn BreakerStore>,
        name: &str,
        policy: BreakerPolicy,
        clock: Clock,
    ) -> Breaker {
        Breaker {
            store,
            name: name.to_string(),
            clock,
            policy,
            view: Mutex::new(None),
        }
    }

    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// Whether to call now. `fresh` reads the store; otherwise a view up to
    /// `view_secs` old will do (the webhook, once per event).
    pub async fn gate(&self, fresh: bool) -> Gate {
        let now = (self.clock)();
        self.state(fresh)
            .await
            .map_or(Gate::Closed, |s| s.gate(now))
    }

    /// The state (`None` when it cannot be read: taken as closed).
    pub async fn state(&self, fresh: bool) -> Option<BreakerState> {
        let now = (self.clock)();
        if !fresh
            && let Some((at, state)) = self.view.lock().expect("breaker view").clone()
            && now < at + self.policy.view_secs
            && now >= at
        {
            return Some(state);
        }
        match self.read().await {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(error = %e, breaker = %self.name, "cannot read the ITSM's breaker; calling as if it were closed");
                None
            }
        }
    }

    async fn read(&self) -> Result<BreakerState, StoreError> {
        let state = self
            .store
            .breaker(&self.name)
            .await?
            .unwrap_or_else(|| BreakerState {
                name: self.name.clone(),
                ..BreakerState::default()
            });
        self.remember(&state);
        Ok(state)
    }

    fn remember(&self, state: &BreakerState) {
        *self.view.lock().expect("breaker view") = Some(((self.clock)(), state.clone()));
    }

    /// Takes the due probe; whether this caller is the one to call.
    pub async fn take_probe(&self) -> bool {
        let now = (self.clock)();
        let Ok(current) = self.read().await else {
            return false;
        };
        if current.gate(now) != Gate::ProbeDue {
            return false;
        }
        self.write(&current, current.probing(now)).await
    }

    /// Gives back a probe taken but not used (the attempt made no ITSM
    /// call: a copy, queued behind earlier work), so that the next caller
    /// probes at once rather than after the probe's lease.
    pub async fn release_probe(&self) {
        let Ok(current) = self.read().await else {
            return;
        };
        if current.is_open() && current.probing_until > (self.clock)() {
            let next = BreakerState {
                probing_until: 0,
                version: current.version + 1,
                ..current.clone()
            };
            self.write(&current, next).await;
        }
    }

    /// After a call that failed with `e`: a transient failure opens the
    /// breaker (or, while open, schedules the next probe).
    pub async fn failed(&self, e: &ItsmError) {
        if !is_outage(e) {
            return;
        }
        let retry_after = match e {
            ItsmError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        };
        let why = e.to_string();
        for _ in 0..3 {
            let now = (self.clock)();
            let Ok(current) = self.read().await else {
                return;
            };
            // Someone opened it meanwhile, for longer: keep theirs.
            if current.is_open() && current.probing_until <= now && current.next_probe > now {
                return;
            }
            let next = current.tripped(now, &why, retry_after, &self.policy);
            if self.write(&current, next.clone()).await {
                tracing::warn!(breaker = %self.name, reason = %why, next_probe_in_secs = next.next_probe - now, "ITSM unavailable: calls stop until a probe finds it back");
                return;
            }
        }
    }

    /// After a call that went through: closes the breaker if it was open.
    /// Cheap when it is known closed.
    pub async fn succeeded(&self) {
        let known_open = self
            .view
            .lock()
            .expect("breaker view")
            .as_ref()
            .is_some_and(|(_, s)| s.is_open());
        if !known_open {
            return;
        }
        for _ in 0..3 {
            let Ok(current) = self.read().await else {
                return;
            };
            if !current.is_open() {
                return;
            }
            let down_for = (self.clock)() - current.down_since;
            if self.write(&current, current.recovered()).await {
                tracing::info!(breaker = %self.name, down_for_secs = down_for, "ITSM back: calls resume");
                return;
            }
        }
    }

    /// Writes `next` over `current`; whether it won.
    async fn write(&self, current: &BreakerState, next: BreakerState) -> bool {
        let expected = (current.version > 0).then_some(current.version);
        match self.store.put_breaker(&next, expected).await {
            Ok(()) => {
                self.remember(&next);
                true
            }
            Err(StoreError::Conflict(_)) => {
                *self.view.lock().expect("breaker view") = None;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, breaker = %self.name, "cannot write the ITSM's breaker");
                false
            }
        }
    }
}

mod round;
pub use round::{PROBE_KEY, ProbeOutcome, ProbeReport};

#[cfg(test)]
mod tests;
