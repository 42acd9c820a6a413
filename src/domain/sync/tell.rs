//! One changed incident: what it asks of its alert, and telling Azure
//! exactly once (lease, call, record; ask first after a lost answer).

use std::time::Duration;

use super::{Action, ActionOutcome, AlertSync};
use crate::domain::correlation::{AzureMark, CorrelationRecord, RecordState};
use crate::domain::ports::{AlertState, AzureError, IncidentChange, IncidentStatus};
use crate::domain::text::clean_line;

/// What became of one change.
pub(super) enum Decision {
    /// Nothing to do, or done: the watermark may pass it.
    Settled(Option<Action>),
    /// Not done: the watermark stays at it.
    Held(Option<Action>),
}

impl AlertSync {
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

    pub(super) async fn decide(
        &self,
        change: &IncidentChange,
        now: i64,
        halt: &mut Option<Halt>,
    ) -> Decision {
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
            "jira" => "Jira",
            other => other,
        };
        let noun = if itsm == "Jira" { "issue" } else { "incident" };
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
            "{itsm} {noun} {} set to {}{who}; {verb} by itsm-bridge",
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
pub(super) enum Halt {
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
