//! The correlation state machine: one alert notification in, at most one
//! ITSM write out, and a record that lets any retry continue where the
//! last attempt stopped.
//!
//! | record \ condition        | Fired                      | Resolved                          |
//! |---------------------------|----------------------------|-----------------------------------|
//! | none                      | claim, create, record Open | record ResolvedWithoutIncident    |
//! | Claimed, lease live       | in progress (retry later)  | in progress (retry later)         |
//! | Claimed, lease expired    | take over, find, else create | take over, find and resolve     |
//! | Open                      | duplicate                  | resolve, record Resolved          |
//! | Resolved / Gone / Without | stale fired (no-op)        | already resolved (no-op)          |

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::alert::{Alert, MonitorCondition};
use super::correlation::{CorrelationRecord, IncidentRef, RecordState};
use super::mapping::IncidentDraft;
use super::mapping::{self, SeverityTable};
use super::ports::{CorrelationStore, ItsmClient, ItsmError, ResolveOutcome, StoreError};
use super::retry::RetryPolicy;
use super::routing::Routing;

/// Unix seconds now; swapped in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub severity: SeverityTable,
    /// How long a claim protects an attempt that is talking to the ITSM.
    /// Must exceed the longest attempt (the Lambda timeout).
    pub lease_secs: i64,
    /// How long records live.
    pub ttl_secs: i64,
    /// Retries of ITSM calls within the event's deadline.
    pub retry: RetryPolicy,
    /// What a Fired does for an alert id that has fired and resolved before.
    pub refire: RefirePolicy,
    /// Routing rules and templates.
    pub routing: Routing,
}

/// The same alert id firing again (a later `firedDateTime`) after it
/// resolved. A late delivery of the original Fired (same `firedDateTime`) is
/// always ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefirePolicy {
    /// Nothing is sent (`stale_fired`).
    #[default]
    Ignore,
    /// The resolved incident goes back in progress with a note (`reopened`).
    Reopen,
    /// A new incident is opened (`created`).
    New,
    /// A note is added to the resolved incident (`noted`).
    Note,
}

impl RefirePolicy {
    pub fn parse(s: &str) -> Option<RefirePolicy> {
        Some(match s {
            "ignore" => RefirePolicy::Ignore,
            "reopen" => RefirePolicy::Reopen,
            "new" => RefirePolicy::New,
            "note" => RefirePolicy::Note,
            _ => return None,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            severity: SeverityTable::default(),
            lease_secs: 60,
            ttl_secs: 90 * 24 * 3600,
            retry: RetryPolicy::default(),
            refire: RefirePolicy::default(),
            routing: Routing::default(),
        }
    }
}

/// What was done with one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new incident was opened.
    Created,
    /// An earlier attempt had opened the incident without recording it; found and recorded.
    Recovered,
    /// The alert already has an incident; nothing was sent to the ITSM.
    Duplicate,
    /// A Fired for an alert that has already resolved; nothing was sent.
    StaleFired,
    /// The incident was resolved.
    Resolved,
    /// Resolved before any incident existed; remembered, nothing was sent.
    ResolvedWithoutIncident,
    /// The incident was resolved before; nothing was sent.
    AlreadyResolved,
    /// The ITSM no longer has the incident; recorded, nothing to resolve.
    IncidentGone,
    /// A person had resolved or closed the incident already; recorded, nothing changed.
    ClosedInItsm,
    /// The alert fired again after it resolved: the incident is back in progress.
    Reopened,
    /// The alert fired again after it resolved: a note was added to the incident.
    Noted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Recovered => "recovered",
            Outcome::Duplicate => "duplicate",
            Outcome::StaleFired => "stale_fired",
            Outcome::Resolved => "resolved",
            Outcome::ResolvedWithoutIncident => "resolved_without_incident",
            Outcome::AlreadyResolved => "already_resolved",
            Outcome::IncidentGone => "incident_gone",
            Outcome::ClosedInItsm => "closed_in_itsm",
            Outcome::Reopened => "reopened",
            Outcome::Noted => "noted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub outcome: Outcome,
    pub incident: Option<IncidentRef>,
    /// ITSM requests made for this event (retries included) and their time.
    pub itsm_calls: u32,
    pub itsm_ms: u64,
}

/// One event's clock and ITSM tally, shared by the calls it makes.
struct Ctx {
    started: Instant,
    itsm_calls: AtomicU32,
    itsm_micros: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Itsm(#[from] ItsmError),
    #[error("another delivery of this alert is being processed right now; retry later")]
    InProgress,
}

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

    /// The incident an alert maps to, routed: the rule that matched
    /// (`None`: the default) and the draft (`replay --explain` shows both).
    pub fn draft(&self, alert: &Alert) -> (Option<&str>, IncidentDraft) {
        self.settings
            .routing
            .apply(alert, mapping::draft(alert, &self.settings.severity))
    }

    /// The store, for tools and tests that inspect records.
    pub fn store(&self) -> Arc<dyn CorrelationStore> {
        self.store.clone()
    }

    pub async fn process(&self, alert: &Alert) -> Result<Processed, ProcessError> {
        let ctx = Ctx {
            started: Instant::now(),
            itsm_calls: AtomicU32::new(0),
            itsm_micros: AtomicU64::new(0),
        };
        // The first round assumes no record: a new alert then costs one
        // write, and a write that loses hands back the record it met.
        let mut known: Option<Option<CorrelationRecord>> = Some(None);
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let current = match known.take() {
                Some(record) => record,
                None => self.store.get(&alert.alert_id, now).await?,
            };
            match self.step(alert, current, now, &ctx).await {
                // Someone wrote between our read and our write: decide again.
                Err(ProcessError::Store(StoreError::Conflict(found))) => {
                    known = found.map(|r| Some(*r))
                }
                other => {
                    return other.map(|mut p| {
                        p.itsm_calls = ctx.itsm_calls.load(Ordering::Relaxed);
                        p.itsm_ms = ctx.itsm_micros.load(Ordering::Relaxed) / 1000;
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
        ctx: &Ctx,
    ) -> Result<Processed, ProcessError> {
        use MonitorCondition::{Fired, Resolved};
        use RecordState::{Claimed, Open, ResolvedWithoutIncident};
        match (alert.condition, current) {
            (Fired, None) => {
                let claim = self.claim(alert, None, now).await?;
                self.open(alert, claim, false, ctx).await
            }
            (_, Some(r)) if r.state == Claimed && r.lease_until > now => {
                Err(ProcessError::InProgress)
            }
            (Fired, Some(r)) if r.state == Claimed => {
                let claim = self.claim(alert, Some(&r), now).await?;
                self.open(alert, claim, true, ctx).await
            }
            (Fired, Some(r)) if self.fires_again(alert, &r) => {
                self.refire(alert, r, now, ctx).await
            }
            (Fired, Some(r)) => Ok(done(
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
                Ok(done(Outcome::ResolvedWithoutIncident, None))
            }
            (Resolved, Some(r)) if r.state == Claimed => {
                let claim = self.claim(alert, Some(&r), now).await?;
                let key = claim.correlation_key.clone();
                match self.retrying(ctx, |_| self.itsm.find(&key)).await {
                    Ok(Some(incident)) => self.resolve(alert, claim, incident, ctx).await,
                    Ok(None) => {
                        let rec =
                            self.next(Some(&claim), alert, ResolvedWithoutIncident, None, now);
                        self.store.put(&rec, Some(claim.version), now).await?;
                        Ok(done(Outcome::ResolvedWithoutIncident, None))
                    }
                    Err(e) => Err(self.release(claim, e).await),
                }
            }
            (Resolved, Some(r)) if r.state == Open => {
                let incident = r.incident.clone().ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "record for {} is open without an incident",
                        r.alert_id
                    ))
                })?;
                self.resolve(alert, r, incident, ctx).await
            }
            (Resolved, Some(r)) => Ok(done(Outcome::AlreadyResolved, r.incident)),
        }
    }

    /// A Fired with another `firedDateTime` than the one recorded, for an
    /// alert that resolved: it fired again (not a late delivery).
    fn fires_again(&self, alert: &Alert, r: &CorrelationRecord) -> bool {
        use RecordState::*;
        self.settings.refire != RefirePolicy::Ignore
            && matches!(r.state, Resolved | IncidentGone | ResolvedWithoutIncident)
            && alert.fired_at.is_some()
            && alert.fired_at != r.fired_at
    }

    async fn refire(
        &self,
        alert: &Alert,
        r: CorrelationRecord,
        now: i64,
        ctx: &Ctx,
    ) -> Result<Processed, ProcessError> {
        let note = mapping::refire_note(alert);
        let existing = r
            .incident
            .clone()
            .filter(|_| r.state == RecordState::Resolved);
        let (state, outcome) = match (self.settings.refire, existing) {
            (RefirePolicy::Reopen, Some(incident)) => {
                self.retrying(ctx, |_| self.itsm.reopen(&incident, &note))
                    .await?;
                (RecordState::Open, Outcome::Reopened)
            }
            (RefirePolicy::Note, Some(incident)) => {
                self.retrying(ctx, |_| self.itsm.note(&incident, &note))
                    .await?;
                (RecordState::Resolved, Outcome::Noted)
            }
            // `new`, or nothing to reopen or note: a new incident, under a
            // key of its own so that a lookup never finds the old one.
            _ => {
                let mut claim = self.next(Some(&r), alert, RecordState::Claimed, None, now);
                claim.incident = None;
                claim.correlation_key = crate::domain::correlation::correlation_key(&format!(
                    "{}|{}",
                    alert.alert_id,
                    alert.fired_at.as_deref().unwrap_or_default()
                ));
                claim.lease_until = now + self.settings.lease_secs;
                claim.fired_at = alert.fired_at.clone();
                claim.resolved_at = None;
                self.store.put(&claim, Some(r.version), now).await?;
                return self.open(alert, claim, false, ctx).await;
            }
        };
        let now = (self.clock)();
        let mut rec = self.next(Some(&r), alert, state, None, now);
        rec.fired_at = alert.fired_at.clone();
        if state == RecordState::Open {
            rec.resolved_at = None;
        }
        self.store.put(&rec, Some(r.version), now).await?;
        Ok(done(outcome, rec.incident))
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
        rec.lease_until = now + self.settings.lease_secs;
        self.store.put(&rec, prev.map(|p| p.version), now).await?;
        Ok(rec)
    }

    /// Opens the incident under a claim. After a takeover the ITSM is asked
    /// first, since the previous attempt may have created it.
    async fn open(
        &self,
        alert: &Alert,
        claim: CorrelationRecord,
        look_first: bool,
        ctx: &Ctx,
    ) -> Result<Processed, ProcessError> {
        let mut draft = self.draft(alert).1;
        draft.correlation_key = claim.correlation_key.clone();
        let attempt = self
            .retrying(ctx, |n| {
                let draft = &draft;
                async move {
                    // A failed attempt may still have created it (a timeout
                    // after ServiceNow committed): look before creating again.
                    if (look_first || n > 0)
                        && let Some(incident) = self.itsm.find(&draft.correlation_key).await?
                    {
                        return Ok((incident, Outcome::Recovered));
                    }
                    self.itsm.create(draft).await.map(|i| (i, Outcome::Created))
                }
            })
            .await;
        let (incident, outcome) = match attempt {
            Ok(done) => done,
            Err(e) => return Err(self.release(claim, e).await),
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
        self.store.put(&rec, Some(claim.version), now).await?;
        Ok(done(outcome, Some(incident)))
    }

    async fn resolve(
        &self,
        alert: &Alert,
        prev: CorrelationRecord,
        incident: IncidentRef,
        ctx: &Ctx,
    ) -> Result<Processed, ProcessError> {
        let resolution = mapping::resolution(alert);
        let resolved = self
            .retrying(ctx, |_| self.itsm.resolve(&incident, &resolution))
            .await;
        let (state, outcome) = match resolved {
            Ok(ResolveOutcome::Resolved) => (RecordState::Resolved, Outcome::Resolved),
            Ok(ResolveOutcome::AlreadyClosed) => (RecordState::Resolved, Outcome::ClosedInItsm),
            Ok(ResolveOutcome::NotFound) => {
                tracing::warn!(incident = %incident.number, "incident no longer exists in the ITSM; recorded as gone");
                (RecordState::IncidentGone, Outcome::IncidentGone)
            }
            Err(e) if prev.state == RecordState::Claimed => {
                return Err(self.release(prev, e).await);
            }
            Err(e) => return Err(e.into()),
        };
        let now = (self.clock)();
        let rec = self.next(Some(&prev), alert, state, Some(incident.clone()), now);
        self.store.put(&rec, Some(prev.version), now).await?;
        Ok(done(outcome, Some(incident)))
    }

    /// Runs an ITSM call (`call(n)` for retry `n`) again after transient
    /// failures, with jittered backoff, while a whole attempt still fits
    /// before the event's deadline.
    async fn retrying<T, F, Fut>(&self, ctx: &Ctx, mut call: F) -> Result<T, ItsmError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ItsmError>>,
    {
        let mut n = 0;
        loop {
            let begun = Instant::now();
            let result = call(n).await;
            ctx.itsm_calls.fetch_add(1, Ordering::Relaxed);
            ctx.itsm_micros
                .fetch_add(begun.elapsed().as_micros() as u64, Ordering::Relaxed);
            match result {
                Err(e) => {
                    n += 1;
                    let Some(wait) = self.settings.retry.wait(n, &e, ctx.started.elapsed()) else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, retry = n, wait_ms = wait.as_millis() as u64, "ITSM call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                ok => return ok,
            }
        }
    }

    /// After an ITSM failure, ends the claim's lease at once so that the
    /// retry Azure sends takes over without waiting (and looks before creating).
    async fn release(&self, claim: CorrelationRecord, cause: ItsmError) -> ProcessError {
        let now = (self.clock)();
        let mut rec = claim.clone();
        rec.lease_until = 0;
        rec.version = claim.version + 1;
        rec.updated_at = now;
        if let Err(e) = self.store.put(&rec, Some(claim.version), now).await {
            // The lease then simply runs out; the retry waits for it.
            tracing::warn!(error = %e, "could not release the claim after an ITSM failure");
        }
        cause.into()
    }

    fn next(
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
        CorrelationRecord {
            alert_id: alert.alert_id.clone(),
            // A refire's new incident has its own key: keep whatever the record holds.
            correlation_key: prev.map_or_else(
                || alert.correlation_key().to_string(),
                |p| p.correlation_key.clone(),
            ),
            itsm: self.itsm.kind().to_string(),
            state,
            incident: incident.or_else(|| prev.and_then(|p| p.incident.clone())),
            // Resolved notifications carry the firedDateTime too: keep it, so
            // that a late Fired of that firing is told from a new one.
            fired_at: kept(|p| &p.fired_at).or_else(|| alert.fired_at.clone()),
            // Only metric alerts carry resolvedDateTime; others get our time.
            resolved_at: kept(|p| &p.resolved_at).or_else(|| {
                (!fired).then(|| alert.resolved_at.clone().unwrap_or_else(|| rfc3339(now)))
            }),
            lease_until: 0,
            updated_at: now,
            expires_at: now + self.settings.ttl_secs,
            version: prev.map_or(1, |p| p.version + 1),
        }
    }
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn done(outcome: Outcome, incident: Option<IncidentRef>) -> Processed {
    Processed {
        outcome,
        incident,
        itsm_calls: 0,
        itsm_ms: 0,
    }
}
