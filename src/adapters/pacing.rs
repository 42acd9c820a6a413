//! Pacing of the ITSM calls queued deliveries make (the worker, `replay
//! --drain`): a decorator over any [`ItsmClient`] that spaces calls evenly
//! at the configured rate, and adapts when the ITSM still says 429: the
//! rate halves (never below a tenth of the configured one); each success
//! adds back a twentieth of the configured rate, up to it (additive
//! increase, multiplicative decrease). The 429's `Retry-After` is the
//! breaker's to honour: it holds every role's calls until then. Inline
//! attempts stay unpaced: Azure waits about 10 s.
//!
//! Calls are spaced one every 1/R s. A caller that fell behind that
//! schedule (the gap between two batches, a slow store call) may catch up
//! by at most half a second's worth of calls, or the time lost there would
//! be lost for good (a drain at 91 % of the limit instead of 98 %): over
//! any stretch of t seconds, at most 1 + R·(t + 0.5) calls, which a token
//! bucket's burst (Jira Cloud) or an hourly count (ServiceNow) absorbs. No
//! slot is further than 10 s away, well within a claim's lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};

/// The longest gap between two calls, whatever the rate.
pub const MOST_SPACING_SECS: f64 = 10.0;

/// How far behind its schedule a caller may catch up.
const CATCH_UP: Duration = Duration::from_millis(500);

pub struct Paced {
    inner: Arc<dyn ItsmClient>,
    most: f64,
    state: Mutex<Pace>,
}

struct Pace {
    /// Calls a second now.
    rate: f64,
    /// Where the schedule stands: the next call starts no earlier than
    /// `CATCH_UP` before it (a generic cell rate algorithm's arrival time).
    next: Instant,
}

impl Paced {
    /// `inner` at most `per_second` calls a second (> 0).
    pub fn new(inner: Arc<dyn ItsmClient>, per_second: f64) -> Paced {
        Paced {
            inner,
            most: per_second,
            state: Mutex::new(Pace {
                rate: per_second,
                // No catching up on time before the first call.
                next: Instant::now() + CATCH_UP,
            }),
        }
    }

    /// The rate now (calls a second).
    pub async fn rate(&self) -> f64 {
        self.state.lock().await.rate
    }

    /// Waits for this call's slot.
    async fn slot(&self) {
        let at = {
            let mut pace = self.state.lock().await;
            let now = Instant::now();
            let at = now.max(pace.next - CATCH_UP);
            let spacing = Duration::from_secs_f64((1.0 / pace.rate).min(MOST_SPACING_SECS));
            // Behind by more than `CATCH_UP`: the rest is lost, not owed.
            pace.next = pace.next.max(now) + spacing;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    async fn after<T>(&self, answer: Result<T, ItsmError>) -> Result<T, ItsmError> {
        let mut pace = self.state.lock().await;
        match &answer {
            Err(ItsmError::Throttled { .. }) => {
                pace.rate = (pace.rate / 2.0).max(self.most / 10.0);
                tracing::info!(rate_per_sec = pace.rate, "ITSM rate limiting: slowing down");
            }
            Ok(_) => pace.rate = (pace.rate + self.most / 20.0).min(self.most),
            Err(_) => {}
        }
        answer
    }
}

#[async_trait]
impl ItsmClient for Paced {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn create_settle_secs(&self) -> i64 {
        self.inner.create_settle_secs()
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        self.slot().await;
        self.after(self.inner.create(draft).await).await
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.slot().await;
        self.after(self.inner.find(correlation_key).await).await
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        self.slot().await;
        self.after(self.inner.resolve(incident, resolution).await)
            .await
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.slot().await;
        self.after(self.inner.reopen(incident, note).await).await
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.slot().await;
        self.after(self.inner.note(incident, note).await).await
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        self.slot().await;
        self.after(self.inner.set_priority(i, impact, urgency).await)
            .await
    }
}

#[cfg(test)]
mod tests;
