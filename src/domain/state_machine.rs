//! The correlation state machine: one alert notification in, at most one
//! ITSM write out, and a record that lets any retry continue where the
//! last attempt stopped. Tested row by row in `tests.rs` beside it.
//!
//! | record \ condition        | Fired                      | Resolved                          |
//! |---------------------------|----------------------------|-----------------------------------|
//! | none                      | claim, create, record Open | record ResolvedWithoutIncident    |
//! | Claimed, lease live       | in progress (retry later)  | in progress (retry later)         |
//! | Claimed, lease expired    | take over, find, else create | take over, find and resolve     |
//! | Open                      | duplicate                  | resolve, record Resolved          |
//! | Resolved / Gone / Without | stale fired (no-op)        | already resolved (no-op)          |
//! | any, for a Resolved of an earlier firing (`firedDateTime` before the record's) | — | already resolved (no-op) |
//! | Queued (nothing sent yet) | claim, create, record Open | record ResolvedWithoutIncident    |
//!
//! With a delivery queue, `process_unless_queued` first checks the record
//! for notifications still waiting in the queue (`domain::delivery`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::alert::text::rfc3339;
use crate::domain::alert::{Alert, MonitorCondition};
use crate::domain::correlation::{CorrelationRecord, IncidentRef, RecordState, correlation_key};
use crate::domain::incident::mapping::{self, IncidentDraft};
use crate::domain::outcome::{Outcome, ProcessError, Processed};
use crate::domain::ports::{
    Clock, CorrelationStore, ItsmClient, ItsmError, ResolveOutcome, StoreError,
};
use crate::domain::retry::Tally;
use crate::domain::settings::{RefirePolicy, Settings};

pub struct Bridge {
    itsm: Arc<dyn ItsmClient>,
    store: Arc<dyn CorrelationStore>,
    settings: Settings,
    clock: Clock,
}

/// Rounds of read-decide-write (the first one optimistic) before contention
/// is answered with "retry later".
const ROUNDS: usize = 4;

impl Bridge {
    pub fn new(
        itsm: Arc<dyn ItsmClient>,
        store: Arc<dyn CorrelationStore>,
        settings: Settings,
        clock: Clock,
    ) -> Bridge {
        Bridge {
            itsm,
            store,
            settings,
            clock,
        }
    }

    pub fn itsm_kind(&self) -> &'static str {
        self.itsm.kind()
    }

    /// The incident an alert's first firing maps to, routed: the rule that
    /// matched (`None`: the default) and the draft (`replay --explain`).
    pub fn draft(&self, alert: &Alert) -> (Option<&str>, IncidentDraft) {
        self.routed(alert, correlation_key(&alert.alert_id))
    }

    fn routed(&self, alert: &Alert, key: String) -> (Option<&str>, IncidentDraft) {
        let draft = mapping::draft(alert, &self.settings.severity, key);
        self.settings.routing.apply(alert, draft)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The same state machine making one attempt, no retries: the breaker's
    /// probe is one call, not an attempt's retries against a down ITSM.
    pub fn without_retries(&self) -> Bridge {
        let mut settings = self.settings.clone();
        settings.retry.deadline = std::time::Duration::ZERO;
        Bridge {
            itsm: self.itsm.clone(),
            store: self.store.clone(),
            settings,
            clock: self.clock.clone(),
        }
    }

    /// The ITSM, for the breaker's probe.
    pub fn itsm(&self) -> Arc<dyn ItsmClient> {
        self.itsm.clone()
    }

    /// The store, for tools and tests that inspect records.
    pub fn store(&self) -> Arc<dyn CorrelationStore> {
        self.store.clone()
    }

    /// Takes one notification as far as it goes now.
    pub async fn process(&self, alert: &Alert) -> Result<Processed, ProcessError> {
        self.run(alert, false).await
    }

    /// As [`process`](Bridge::process), unless earlier notifications of this
    /// alert wait in the delivery queue: then nothing is done and
    /// [`ProcessError::Behind`] hands back the record, so that this one
    /// queues behind them.
    pub async fn process_unless_queued(&self, alert: &Alert) -> Result<Processed, ProcessError> {
        self.run(alert, true).await
    }

    async fn run(&self, alert: &Alert, unless_queued: bool) -> Result<Processed, ProcessError> {
        let tally = Tally::start();
        // The first round assumes no record: a new alert then costs one
        // write, and a write that loses hands back the record it met.
        let mut known: Option<Option<CorrelationRecord>> = Some(None);
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let current = match known.take() {
                Some(record) => record,
                None => self.store.get(&alert.alert_id, now).await?,
            };
            if unless_queued
                && let Some(r) = &current
                && r.has_queued_work(now, self.settings.queue_horizon_secs)
            {
                return Err(ProcessError::Behind(Box::new(r.clone())));
            }
            match self.step(alert, current, now, &tally).await {
                // Someone wrote between our read and our write: decide again.
                Err(ProcessError::Store(StoreError::Conflict(found))) => {
                    known = found.map(|r| Some(*r))
                }
                other => {
                    return other.map(|mut p| {
                        p.itsm_calls = tally.calls();
                        p.itsm_ms = tally.itsm_ms();
                        p
                    });
                }
            }
        }
        Err(ProcessError::InProgress)
    }

    async fn step(
        &self,
        alert: &Alert,
        current: Option<CorrelationRecord>,
        now: i64,
        tally: &Tally,
    ) -> Result<Processed, ProcessError> {
        use MonitorCondition::{Fired, Resolved};
        use RecordState::{Claimed, Open, Queued, ResolvedWithoutIncident};
        match (alert.condition, current) {
            (Fired, None) => {
                let claim = self.claim(alert, None, now).await?;
                self.open(alert, claim, None, tally).await
            }
            // Nothing was sent for a queued alert yet: as new, on its record.
            (Fired, Some(r)) if r.state == Queued => {
                let claim = self.claim(alert, Some(&r), now).await?;
                self.open(alert, claim, None, tally).await
            }
            (Resolved, Some(r)) if r.state == Queued => {
                let rec = self.next(Some(&r), alert, ResolvedWithoutIncident, None, now);
                self.store.put(&rec, Some(r.version), now).await?;
                Ok(Processed::new(Outcome::ResolvedWithoutIncident, None))
            }
            (_, Some(r)) if r.state == Claimed && r.lease_until > now => {
                Err(ProcessError::InProgress)
            }
            (Resolved, Some(r)) if Self::resolves_an_earlier_firing(alert, &r) => {
                Ok(Processed::new(Outcome::AlreadyResolved, r.incident))
            }
            (Fired, Some(r)) if r.state == Claimed => {
                let claim = self.claim(alert, Some(&r), now).await?;
                self.open(alert, claim, Some(r.look_until), tally).await
            }
            (Fired, Some(r)) if self.fires_again(alert, &r) => {
                self.refire(alert, r, now, tally).await
            }
            (Fired, Some(r)) => Ok(Processed::new(
                if r.state == Open {
                    Outcome::Duplicate
                } else {
                    Outcome::StaleFired
                },
                r.incident,
            )),
            (Resolved, None) => {
                let rec = self.next(None, alert, ResolvedWithoutIncident, None, now);
                self.store.put(&rec, None, now).await?;
                Ok(Processed::new(Outcome::ResolvedWithoutIncident, None))
            }
            (Resolved, Some(r)) if r.state == Claimed => {
                let claim = self.claim(alert, Some(&r), now).await?;
                let key = claim.correlation_key.clone();
                match self
                    .settings
                    .retry
                    .run(tally, |_| self.itsm.find(&key))
                    .await
                {
                    Ok(Some(incident)) => self.resolve(alert, claim, incident, tally).await,
                    // A create moments ago may not show yet: no verdict now.
                    Ok(None) if (self.clock)() < r.look_until => {
                        Err(self.release(claim, unsure_search(), r.look_until).await)
                    }
                    Ok(None) => {
                        if let Err(e) = self.itsm.resolved_without_incident(&key).await {
                            return Err(self.release(claim, e, r.look_until).await);
                        }
                        let rec =
                            self.next(Some(&claim), alert, ResolvedWithoutIncident, None, now);
                        self.store.put(&rec, Some(claim.version), now).await?;
                        Ok(Processed::new(Outcome::ResolvedWithoutIncident, None))
                    }
                    Err(e) => Err(self.release(claim, e, r.look_until).await),
                }
            }
            (Resolved, Some(r)) if r.state == Open => {
                let incident = r.incident.clone().ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "record for {} is open without an incident",
                        r.alert_id
                    ))
                })?;
                self.resolve(alert, r, incident, tally).await
            }
            (Resolved, Some(r)) => Ok(Processed::new(Outcome::AlreadyResolved, r.incident)),
        }
    }

    /// Takes the alert for this attempt: a conditional write that only one
    /// concurrent delivery can win.
    async fn claim(
        &self,
        alert: &Alert,
        prev: Option<&CorrelationRecord>,
        now: i64,
    ) -> Result<CorrelationRecord, ProcessError> {
        let mut rec = self.next(prev, alert, RecordState::Claimed, None, now);
        self.lease(&mut rec, now);
        self.store.put(&rec, prev.map(|p| p.version), now).await?;
        Ok(rec)
    }

    /// Opens the incident under a claim. After a takeover the ITSM is asked
    /// first, since the previous attempt may have created it; an empty
    /// answer is not trusted before `taken_over`'s time (the previous
    /// attempt's `look_until`), nor within the ITSM's search lag of a
    /// failed create of this attempt.
    async fn open(
        &self,
        alert: &Alert,
        claim: CorrelationRecord,
        taken_over: Option<i64>,
        tally: &Tally,
    ) -> Result<Processed, ProcessError> {
        let draft = self.routed(alert, claim.correlation_key.clone()).1;
        let settle = self.settle_secs();
        // Until when this attempt's own failed creates may hide from a search.
        let own = AtomicI64::new(0);
        let attempt = self
            .settings
            .retry
            .run(tally, |n| {
                let (draft, own) = (&draft, &own);
                async move {
                    // A failed attempt may still have created it (a timeout
                    // after ServiceNow committed): look before creating again.
                    if taken_over.is_some() || n > 0 {
                        if let Some(incident) = self.itsm.find(&draft.correlation_key).await? {
                            return Ok((incident, Outcome::Recovered));
                        }
                        let trust_from = taken_over.unwrap_or(0).max(own.load(Ordering::Relaxed));
                        if (self.clock)() < trust_from {
                            return Err(unsure_search());
                        }
                    }
                    let created = self.itsm.create(draft).await;
                    // It may still be on its way: not trusted before the
                    // lag has passed, nor before the claim's own look-until
                    // (a container whose clock runs ahead must wait too).
                    if let Err(ItsmError::Unanswered(_)) = &created {
                        let until = ((self.clock)() + settle).max(claim.look_until);
                        own.store(until, Ordering::Relaxed);
                    }
                    created.map(|i| (i, Outcome::Created))
                }
            })
            .await;
        let (incident, outcome) = match attempt {
            Ok(done) => done,
            Err(e) => {
                let look_until = taken_over.unwrap_or(0).max(own.load(Ordering::Relaxed));
                return Err(self.release(claim, e, look_until).await);
            }
        };
        let now = (self.clock)();
        let rec = self.next(
            Some(&claim),
            alert,
            RecordState::Open,
            Some(incident.clone()),
            now,
        );
        // If this fails the claim stays; the next attempt after the lease
        // finds the incident by its correlation key instead of creating another.
        self.commit(&claim, rec).await?;
        Ok(Processed::new(outcome, Some(incident)))
    }

    async fn resolve(
        &self,
        alert: &Alert,
        prev: CorrelationRecord,
        incident: IncidentRef,
        tally: &Tally,
    ) -> Result<Processed, ProcessError> {
        let resolution = mapping::resolution(alert);
        let resolved = self
            .settings
            .retry
            .run(tally, |_| self.itsm.resolve(&incident, &resolution))
            .await;
        let (state, outcome) = match resolved {
            Ok(ResolveOutcome::Resolved) => (RecordState::Resolved, Outcome::Resolved),
            Ok(ResolveOutcome::AlreadyClosed) => (RecordState::Resolved, Outcome::ClosedInItsm),
            Ok(ResolveOutcome::NotFound) => {
                tracing::warn!(incident = %incident.number, "incident no longer exists in the ITSM; recorded as gone");
                (RecordState::IncidentGone, Outcome::IncidentGone)
            }
            // The incident was found: nothing of a create to wait for.
            Err(e) if prev.state == RecordState::Claimed => {
                return Err(self.release(prev, e, 0).await);
            }
            Err(e) => return Err(e.into()),
        };
        let now = (self.clock)();
        let rec = self.next(Some(&prev), alert, state, Some(incident.clone()), now);
        self.commit(&prev, rec).await?;
        Ok(Processed::new(outcome, Some(incident)))
    }

    /// The record that follows `prev` for `alert` in `state`.
    pub(crate) fn next(
        &self,
        prev: Option<&CorrelationRecord>,
        alert: &Alert,
        state: RecordState,
        incident: Option<IncidentRef>,
        now: i64,
    ) -> CorrelationRecord {
        let fired = alert.condition == MonitorCondition::Fired;
        let kept =
            |field: fn(&CorrelationRecord) -> &Option<String>| prev.and_then(|p| field(p).clone());
        let incident = incident.or_else(|| prev.and_then(|p| p.incident.clone()));
        let rec_incident = incident.clone();
        CorrelationRecord {
            alert_id: alert.alert_id.clone(),
            // A refire's new incident has its own key: keep whatever the record holds.
            correlation_key: prev.map_or_else(
                || correlation_key(&alert.alert_id),
                |p| p.correlation_key.clone(),
            ),
            itsm: self.itsm.kind().to_string(),
            state,
            incident,
            // Resolved notifications carry the firedDateTime too: keep it, so
            // that a late Fired of that firing is told from a new one.
            fired_at: kept(|p| &p.fired_at).or_else(|| alert.fired_at.clone()),
            // Only metric alerts carry resolvedDateTime; others get our time.
            resolved_at: kept(|p| &p.resolved_at).or_else(|| {
                (!fired).then(|| alert.resolved_at.clone().unwrap_or_else(|| rfc3339(now)))
            }),
            lease_until: 0,
            updated_at: now,
            expires_at: self.settings.expires_at(state, alert.is_stateless(), now),
            version: prev.map_or(1, |p| p.version + 1),
            // What the delivery queue holds is the queue's business: kept.
            queued_seq: prev.map_or(0, |p| p.queued_seq),
            delivered_seq: prev.map_or(0, |p| p.delivered_seq),
            queued_at: prev.map_or(0, |p| p.queued_at),
            queued_digest: prev.and_then(|p| p.queued_digest.clone()),
            queue: prev.map(|p| p.queue.clone()).unwrap_or_default(),
            look_until: prev.map_or(0, |p| p.look_until),
            // What Azure was told belongs to the incident it was told about;
            // or, told before the claim made its incident (a person resolved
            // its group's parent meanwhile), to the firing the claim is for.
            azure: prev
                .filter(|p| {
                    p.incident == rec_incident
                        || (p.state == RecordState::Claimed && p.incident.is_none())
                })
                .map_or_else(Default::default, |p| p.azure.clone()),
        }
    }
}

mod commit;
mod lease;
mod refire;
use lease::unsure_search;
#[cfg(test)]
mod tests;
