//! The sync role's round: an incident a person resolved, closed or
//! cancelled in the ITSM closes its Azure alert (and, if asked, one taken
//! into work acknowledges it). Tested in `tests.rs` beside it.
//!
//! Exactly once: the record says what Azure was told (`azure.sent`). A
//! round takes the record with a lease before it calls Azure and writes the
//! result after; two overlapping rounds cannot both hold the lease, and a
//! lease left behind (a round that died around its call) makes the next
//! round ask Azure for the alert's state before calling again. Only records
//! the bridge still holds `Open` are acted on: the bridge's own resolve
//! writes `Resolved` and so never comes back to Azure.
//!
//! Nothing is missed: changes are read from the watermark (less an overlap
//! for clock skew) up to a little before now (the bridge's own writes
//! settle first), and the watermark moves only past changes dealt with.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::correlation::{AzureMark, CorrelationRecord, RecordState};
use super::ports::{
    AlertState, AlertStates, AzureError, ChangeWindow, Clock, IncidentChange, IncidentChanges,
    IncidentStatus, ItsmError, StoreError, SyncStore, Watermark,
};
use super::text::clean_line;

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Incidents taken into work acknowledge their alert.
    pub acknowledge: bool,
    /// Each round re-reads this much before the watermark: clock skew
    /// between the ITSM and us, and updates committed late.
    pub overlap_secs: i64,
    /// Changes younger than this wait for the next round, so that the
    /// bridge's own resolve has written its record before it is looked at.
    pub settle_secs: i64,
    /// How far back the very first round looks.
    pub first_lookback_secs: i64,
    /// How long a round holds a record while it calls Azure.
    pub lease_secs: i64,
    /// Pages per round, to bound a round's time; the rest waits.
    pub max_pages: usize,
    /// Incidents per page asked of the ITSM.
    pub page_size: usize,
    /// A round stops taking up changes after this long (Azure calls are one
    /// at a time, to stay within Resource Manager's write limits), well
    /// inside the function's timeout; the rest waits for the next round.
    pub budget: Duration,
    /// Azure asked to wait without saying how long: wait this much.
    pub default_pause_secs: i64,
    /// Show what would be sent; write nothing anywhere.
    pub dry_run: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            acknowledge: false,
            overlap_secs: 120,
            settle_secs: 60,
            first_lookback_secs: 24 * 3600,
            lease_secs: 60,
            max_pages: 50,
            page_size: 100,
            budget: Duration::from_secs(90),
            default_pause_secs: 60,
            dry_run: false,
        }
    }
}

/// What one round did for one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub alert_id: String,
    pub incident: String,
    pub state: &'static str,
    pub outcome: ActionOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Azure's state was set.
    Sent,
    /// A previous round had set it (it died before recording that).
    AlreadySet,
    /// Azure no longer has the alert; recorded, never retried.
    Gone,
    /// Dry run: this is what would be sent.
    WouldSend,
    /// The app registration may not change alert states; retried next round.
    Denied,
    /// Azure or the store failed for now; retried next round.
    Deferred,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    /// Changed incidents read from the ITSM.
    pub examined: usize,
    /// Incidents that needed nothing (not ours, already told, the bridge's own).
    pub skipped: usize,
    pub actions: Vec<Action>,
    /// Where the next round starts (Unix seconds).
    pub watermark: i64,
    /// The round did nothing: Azure asked to wait until this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<i64>,
}

impl RoundReport {
    pub fn count(&self, outcome: ActionOutcome) -> usize {
        self.actions.iter().filter(|a| a.outcome == outcome).count()
    }
}

/// Why a round stopped early; it changed no watermark and is retried whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("reading the ITSM's changes: {0}")]
    Itsm(#[from] ItsmError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What became of one change.
enum Decision {
    /// Nothing to do, or done: the watermark may pass it.
    Settled(Option<Action>),
    /// Not done: the watermark stays at it.
    Held(Option<Action>),
}

pub struct AlertSync {
    itsm: Arc<dyn IncidentChanges>,
    store: Arc<dyn SyncStore>,
    azure: Arc<dyn AlertStates>,
    settings: SyncSettings,
    clock: Clock,
}

impl AlertSync {
    pub fn new(
        itsm: Arc<dyn IncidentChanges>,
        store: Arc<dyn SyncStore>,
        azure: Arc<dyn AlertStates>,
        settings: SyncSettings,
        clock: Clock,
    ) -> AlertSync {
        AlertSync {
            itsm,
            store,
            azure,
            settings,
            clock,
        }
    }

    /// One round: reads the ITSM's changes since the watermark and tells
    /// Azure what people did.
    ///
    /// # Errors
    /// [`SyncError`] when the ITSM's changes or the watermark could not be
    /// read; nothing moved, the next round starts from the same place.
    pub async fn round(&self) -> Result<RoundReport, SyncError> {
        let now = (self.clock)();
        let name = self.itsm.kind();
        let stored = self.store.watermark(name).await?;
        if let Some(w) = &stored
            && w.azure_not_before > now
            && !self.settings.dry_run
        {
            return Ok(RoundReport {
                watermark: w.since,
                paused_until: Some(w.azure_not_before),
                ..RoundReport::default()
            });
        }
        let start = stored
            .as_ref()
            .map_or(now - self.settings.first_lookback_secs, |w| w.since);
        let window = ChangeWindow {
            since: start - self.settings.overlap_secs,
            until: now - self.settings.settle_secs,
            page_size: self.settings.page_size,
        };
        let mut report = RoundReport::default();
        // The earliest change not dealt with, and how far the pages went.
        let mut held: Option<i64> = None;
        let mut reached = window.since;
        let mut halt: Option<Halt> = None;
        let mut cursor: Option<String> = None;
        let started = std::time::Instant::now();
        let mut out_of_time = false;
        for page_no in 0.. {
            if page_no == self.settings.max_pages {
                // The rest waits for the next round.
                tracing::info!(pages = page_no, "sync round stopped at its page limit");
                break;
            }
            let page = self.itsm.changed(window, cursor.as_deref()).await?;
            for change in &page.changes {
                if started.elapsed() > self.settings.budget {
                    // Out of time: this change and the rest wait.
                    held = Some(held.map_or(change.updated_at, |h| h.min(change.updated_at)));
                    out_of_time = true;
                    break;
                }
                report.examined += 1;
                let (action, keep) = match self.decide(change, now, &mut halt).await {
                    Decision::Settled(a) => (a, false),
                    Decision::Held(a) => (a, true),
                };
                if keep {
                    held = Some(held.map_or(change.updated_at, |h| h.min(change.updated_at)));
                }
                match action {
                    Some(a) => report.actions.push(a),
                    None => report.skipped += 1,
                }
            }
            if out_of_time {
                tracing::info!("sync round stopped at its time budget; the next round goes on");
                break;
            }
            let Some(next) = page.next else {
                reached = window.until;
                break;
            };
            cursor = Some(next);
            // Pages come oldest first: a round cut short resumes here.
            if let Some(last) = page.changes.last() {
                reached = last.updated_at;
            }
        }
        let since = held.map_or(reached, |h| h.min(reached));
        report.watermark = since;
        if !self.settings.dry_run {
            let pause = match &halt {
                Some(Halt::Throttled(wait)) => now + wait.as_secs() as i64,
                _ => 0,
            };
            self.save(name, since, pause, stored).await;
        }
        Ok(report)
    }

    async fn save(&self, name: &str, since: i64, pause: i64, stored: Option<Watermark>) {
        let next = Watermark {
            name: name.to_string(),
            since,
            azure_not_before: pause,
            version: stored.as_ref().map_or(1, |w| w.version + 1),
        };
        match self
            .store
            .put_watermark(&next, stored.map(|w| w.version))
            .await
        {
            Ok(()) => {}
            // An overlapping round moved it: its view is as good as ours.
            Err(StoreError::Conflict(_)) => {
                tracing::info!("another sync round moved the watermark first")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not save the sync watermark; the next round reads these changes again")
            }
        }
    }

    /// The state `change` asks of its alert, if any.
    fn target(&self, change: &IncidentChange) -> Option<AlertState> {
        match change.status {
            IncidentStatus::Closed => Some(AlertState::Closed),
            IncidentStatus::InProgress if self.settings.acknowledge => {
                Some(AlertState::Acknowledged)
            }
            _ => None,
        }
    }

    async fn decide(&self, change: &IncidentChange, now: i64, halt: &mut Option<Halt>) -> Decision {
        let Some(target) = self.target(change) else {
            return Decision::Settled(None);
        };
        let action = |outcome, detail: Option<String>| {
            Some(Action {
                alert_id: String::new(),
                incident: change.incident.number.clone(),
                state: target.as_str(),
                outcome,
                detail,
            })
        };
        let record = match self.store.by_key(&change.correlation_key, now).await {
            Ok(Some(r)) => r,
            // Not the bridge's, or its record expired: nothing to tell.
            Ok(None) => return Decision::Settled(None),
            Err(e) => return Decision::Held(action(ActionOutcome::Deferred, Some(e.to_string()))),
        };
        let with_id = |a: Option<Action>| {
            a.map(|a| Action {
                alert_id: record.alert_id.clone(),
                ..a
            })
        };
        let recovering = match self.needs(&record, change, target, now) {
            Need::Nothing => return Decision::Settled(None),
            Need::Wait => return Decision::Held(None),
            Need::Call { recovering } => recovering,
        };
        if let Some(h) = halt.as_ref() {
            let (outcome, detail) = h.told();
            return Decision::Held(with_id(action(outcome, Some(detail))));
        }
        if self.settings.dry_run {
            let comment = self.comment(change, target);
            return match self.azure.change(&record.alert_id, target, &comment).await {
                Ok(()) => Decision::Settled(with_id(action(ActionOutcome::WouldSend, None))),
                Err(e) => Decision::Held(with_id(action(
                    ActionOutcome::Deferred,
                    Some(e.to_string()),
                ))),
            };
        }
        match self
            .tell(record.clone(), change, target, recovering, now)
            .await
        {
            Ok(outcome) => Decision::Settled(with_id(action(outcome, None))),
            Err(Told::Deferred(detail)) => {
                Decision::Held(with_id(action(ActionOutcome::Deferred, Some(detail))))
            }
            Err(Told::Denied(detail)) => {
                tracing::error!(
                    error = %detail,
                    "Azure refused to change an alert's state: give the app registration the \
                     Monitoring Contributor role (Microsoft.AlertsManagement/alerts/changestate/action) \
                     at the subscriptions whose alerts it closes; retried next round"
                );
                *halt = Some(Halt::Denied(detail.clone()));
                Decision::Held(with_id(action(ActionOutcome::Denied, Some(detail))))
            }
            Err(Told::Throttled(wait, detail)) => {
                let wait = wait.unwrap_or(Duration::from_secs(
                    self.settings.default_pause_secs.max(0) as u64,
                ));
                *halt = Some(Halt::Throttled(wait));
                Decision::Held(with_id(action(ActionOutcome::Deferred, Some(detail))))
            }
        }
    }

    fn needs(
        &self,
        record: &CorrelationRecord,
        change: &IncidentChange,
        target: AlertState,
        now: i64,
    ) -> Need {
        let mark = match target {
            AlertState::Closed => AzureMark::Closed,
            _ => AzureMark::Acknowledged,
        };
        let same_incident = record
            .incident
            .as_ref()
            .is_some_and(|i| i.id == change.incident.id || i.number == change.incident.number);
        match record.state {
            // Mid-create by the webhook: look again next round.
            RecordState::Claimed if record.lease_until > now => return Need::Wait,
            RecordState::Open if same_incident => {}
            // The bridge resolved it (its own resolve), the alert resolved
            // first, an earlier firing's incident: nothing to tell Azure.
            _ => return Need::Nothing,
        }
        if record.azure.sent.is_some_and(|s| s >= mark) {
            return Need::Nothing;
        }
        if record.azure.lease_until > now {
            return Need::Wait;
        }
        Need::Call {
            recovering: record.azure.lease_until != 0,
        }
    }

    /// Leases the record, tells Azure, records what it was told.
    async fn tell(
        &self,
        record: CorrelationRecord,
        change: &IncidentChange,
        target: AlertState,
        recovering: bool,
        now: i64,
    ) -> Result<ActionOutcome, Told> {
        let mut leased = record.clone();
        leased.azure.lease_until = now + self.settings.lease_secs;
        leased.version = record.version + 1;
        leased.updated_at = now;
        self.store
            .put(&leased, Some(record.version), now)
            .await
            .map_err(|e| Told::Deferred(e.to_string()))?;
        let alert_id = &record.alert_id;
        // A round died around its call: Azure may have the state already.
        if recovering {
            match self.azure.current(alert_id).await {
                Ok(state) if state >= target => {
                    return self
                        .finish(leased, mark_for(target), ActionOutcome::AlreadySet)
                        .await;
                }
                Ok(_) => {}
                Err(e) => return self.failed(leased, e).await,
            }
        }
        let comment = self.comment(change, target);
        match self.azure.change(alert_id, target, &comment).await {
            Ok(()) => {
                self.finish(leased, mark_for(target), ActionOutcome::Sent)
                    .await
            }
            Err(e) => self.failed(leased, e).await,
        }
    }

    async fn failed(
        &self,
        leased: CorrelationRecord,
        e: AzureError,
    ) -> Result<ActionOutcome, Told> {
        match e {
            AzureError::NotFound => {
                tracing::info!(alert_id = ?leased.alert_id, "Azure no longer has the alert; recorded, not retried");
                self.finish(leased, AzureMark::Gone, ActionOutcome::Gone)
                    .await
            }
            // Timed out or failed on Azure's side: the change may have
            // happened. The lease is left run out, so the next round asks
            // Azure before calling again.
            AzureError::Unavailable(m) => {
                self.release(leased, true).await;
                Err(Told::Deferred(m))
            }
            // Refused before anything changed: the next round calls again.
            other => {
                self.release(leased, false).await;
                Err(match other {
                    AzureError::Denied(m) => Told::Denied(m),
                    AzureError::Throttled { retry_after } => {
                        Told::Throttled(retry_after, other.to_string())
                    }
                    other => Told::Deferred(other.to_string()),
                })
            }
        }
    }

    async fn finish(
        &self,
        leased: CorrelationRecord,
        mark: AzureMark,
        outcome: ActionOutcome,
    ) -> Result<ActionOutcome, Told> {
        let now = (self.clock)();
        let mut done = leased.clone();
        done.azure.sent = Some(mark);
        done.azure.lease_until = 0;
        done.version = leased.version + 1;
        done.updated_at = now;
        // If this fails the lease stays; the next round asks Azure first.
        self.store
            .put(&done, Some(leased.version), now)
            .await
            .map_err(|e| Told::Deferred(format!("Azure was told; recording it failed: {e}")))?;
        Ok(outcome)
    }

    /// Ends a lease after a failed call: at once, and marked for asking
    /// Azure first when the call may have taken effect (`uncertain`).
    async fn release(&self, leased: CorrelationRecord, uncertain: bool) {
        let now = (self.clock)();
        let mut rec = leased.clone();
        rec.azure.lease_until = if uncertain { now } else { 0 };
        rec.version = leased.version + 1;
        rec.updated_at = now;
        if let Err(e) = self.store.put(&rec, Some(leased.version), now).await {
            tracing::warn!(error = %e, "could not release the sync lease; it runs out by itself");
        }
    }

    /// The comment in the alert's history: the incident, its status and
    /// who set it, one line (ITSM text is cleaned like alert text).
    fn comment(&self, change: &IncidentChange, target: AlertState) -> String {
        let itsm = match self.itsm.kind() {
            "servicenow" => "ServiceNow",
            "bmc-helix" => "BMC Helix",
            other => other,
        };
        let who = change
            .updated_by
            .as_deref()
            .map(|w| format!(" by {}", clean_line(w, 100)))
            .unwrap_or_default();
        let verb = match target {
            AlertState::Closed => "closed",
            _ => "acknowledged",
        };
        format!(
            "{itsm} incident {} set to {}{who}; {verb} by itsm-bridge",
            clean_line(change.incident.number.as_str(), 40),
            clean_line(change.status_label.as_str(), 40),
        )
    }
}

fn mark_for(target: AlertState) -> AzureMark {
    match target {
        AlertState::Closed => AzureMark::Closed,
        _ => AzureMark::Acknowledged,
    }
}

enum Need {
    Nothing,
    Wait,
    Call { recovering: bool },
}

enum Told {
    Deferred(String),
    Denied(String),
    Throttled(Option<Duration>, String),
}

/// Why the rest of a round makes no Azure calls.
enum Halt {
    /// The role assignment is missing: every call would fail alike.
    Denied(String),
    /// Azure asked us to slow down.
    Throttled(Duration),
}

impl Halt {
    /// What becomes of the calls a halted round does not make.
    fn told(&self) -> (ActionOutcome, String) {
        match self {
            Halt::Denied(m) => (ActionOutcome::Denied, m.clone()),
            Halt::Throttled(_) => (
                ActionOutcome::Deferred,
                "Azure asked to slow down; next round".to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
