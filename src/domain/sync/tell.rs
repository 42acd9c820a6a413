//! One changed incident: what it asks of its alert, and telling Azure
//! exactly once (lease, call, record; ask first after a lost answer).

use std::time::{Duration, Instant};

use super::{Action, ActionOutcome, AlertSync};
use crate::domain::correlation::{
    AzureMark, AzureSync, CorrelationRecord, GROUP_CHILD, IncidentRef, RecordState,
};
use crate::domain::ports::{AlertState, AzureError, IncidentChange, IncidentStatus, StoreError};

/// What became of one change.
pub(super) enum Decision {
    /// Nothing to do, done, or never doable: the watermark may pass it.
    Settled(Vec<Action>),
    /// Not done for now: the watermark stays at it, for `why`.
    Held {
        actions: Vec<Action>,
        alert_id: String,
        why: String,
    },
}

pub(super) fn action(
    change: &IncidentChange,
    target: AlertState,
    alert_id: &str,
    outcome: ActionOutcome,
    detail: Option<String>,
) -> Vec<Action> {
    vec![Action {
        alert_id: alert_id.to_string(),
        incident: change.incident.number.clone(),
        state: target.as_str(),
        outcome,
        detail,
    }]
}

pub(super) fn held(alert_id: &str, actions: Vec<Action>, why: String) -> Decision {
    Decision::Held {
        actions,
        alert_id: alert_id.to_string(),
        why,
    }
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
        started: Instant,
    ) -> Decision {
        let Some(target) = self.target(change) else {
            return Decision::Settled(Vec::new());
        };
        match self.store.by_key(&change.correlation_key, now).await {
            Ok(Some(record)) => self.act(record, change, target, now, halt, None).await,
            // Not an alert's: a group's parent, another tool's incident, or
            // a record expired (nothing to tell).
            Ok(None) => self.decide_parent(change, target, now, halt, started).await,
            Err(e) => {
                let why = e.to_string();
                let deferred = action(
                    change,
                    target,
                    "",
                    ActionOutcome::Deferred,
                    Some(why.clone()),
                );
                held("", deferred, why)
            }
        }
    }

    /// Tells Azure what `change` asks of `record`'s alert. `group`: the
    /// record is a child of that group, whose parent `change` is.
    pub(super) async fn act(
        &self,
        record: CorrelationRecord,
        change: &IncidentChange,
        target: AlertState,
        now: i64,
        halt: &mut Option<Halt>,
        group: Option<&str>,
    ) -> Decision {
        let action =
            |alert_id: &str, outcome, detail| action(change, target, alert_id, outcome, detail);
        let id = record.alert_id.as_str();
        let mut need = self.needs(&record, change, target, now, group);
        // A child incident an attempt created and did not record: the
        // alert's own retry records it as its group's child. Recorded here
        // as a plain incident, its Resolved would not count it out.
        if matches!(need, Need::Adopt)
            && let Some(groups) = &self.groups
        {
            match groups.is_child(&record.correlation_key).await {
                Ok(true) => need = Need::Nothing,
                Ok(false) => {}
                Err(e) => return held(id, Vec::new(), format!("group store: {e}")),
            }
        }
        let (record, recovering) = match need {
            Need::Nothing => return Decision::Settled(Vec::new()),
            Need::Wait(why) => return held(id, Vec::new(), why.to_string()),
            Need::Call { recovering } => (record, recovering),
            Need::Adopt if self.settings.dry_run => (record, false),
            Need::Adopt => match self.adopt(&record, change).await {
                Ok(adopted) => (adopted, false),
                Err(e) => {
                    let why = format!("recording the incident an attempt left unrecorded: {e}");
                    return held(id, Vec::new(), why);
                }
            },
        };
        let id = record.alert_id.as_str();
        if let Some(h) = halt.as_ref() {
            let (outcome, detail) = h.told();
            return held(id, action(id, outcome, Some(detail.clone())), detail);
        }
        if self.settings.dry_run {
            let comment = self.comment(change, target);
            return match self.azure.change(&record.alert_id, target, &comment).await {
                Ok(()) => Decision::Settled(action(id, ActionOutcome::WouldSend, None)),
                Err(e) if e.is_final_for_the_alert() => {
                    Decision::Settled(action(id, ActionOutcome::Skipped, Some(e.to_string())))
                }
                Err(e) => held(
                    id,
                    action(id, ActionOutcome::Deferred, Some(e.to_string())),
                    e.to_string(),
                ),
            };
        }
        match self
            .tell(record.clone(), change, target, recovering, now)
            .await
        {
            Ok((outcome, detail)) => Decision::Settled(action(id, outcome, detail)),
            Err(Told::Deferred(detail)) => held(
                id,
                action(id, ActionOutcome::Deferred, Some(detail.clone())),
                detail,
            ),
            Err(Told::Denied(detail)) => {
                tracing::error!(
                    error = %detail,
                    "Azure refused to change an alert's state, as it would every alert: fix \
                     what the error names; the round stops calling Azure, the next one tries again"
                );
                *halt = Some(Halt::Denied(detail.clone()));
                held(
                    id,
                    action(id, ActionOutcome::Denied, Some(detail.clone())),
                    detail,
                )
            }
            Err(Told::Throttled(wait, detail)) => {
                let wait = wait.unwrap_or(Duration::from_secs(
                    self.settings.default_pause_secs.max(0) as u64,
                ));
                *halt = Some(Halt::Throttled(wait));
                held(
                    id,
                    action(id, ActionOutcome::Deferred, Some(detail.clone())),
                    detail,
                )
            }
        }
    }

    fn needs(
        &self,
        record: &CorrelationRecord,
        change: &IncidentChange,
        target: AlertState,
        now: i64,
        group: Option<&str>,
    ) -> Need {
        let mark = mark_for(target);
        let same_incident = record.incident.as_ref().is_some_and(|i| match group {
            // A child of the group whose parent this is (not of a later one).
            Some(gid) => {
                i.id.strip_prefix(GROUP_CHILD)
                    .is_some_and(|rest| rest.starts_with(&format!("{gid}/")))
            }
            // A group's child incident: its parent speaks for it (a person
            // resolving the parent closes the children in Azure; the
            // cascade after the bridge's own resolve closes nothing).
            None => {
                !i.is_group_child()
                    && (i.id == change.incident.id || i.number == change.incident.number)
            }
        });
        match record.state {
            // Mid-create by the webhook: look again next round.
            RecordState::Claimed if record.lease_until > now => {
                return Need::Wait("the webhook is still creating its incident");
            }
            // An attempt created this incident and died (or failed) before
            // recording it: the feed shows it under the claim's own key.
            RecordState::Claimed
                if record.incident.is_none()
                    && record.correlation_key == change.correlation_key =>
            {
                return Need::Adopt;
            }
            RecordState::Open if same_incident => {}
            // An open child of the group a person resolved whose own
            // incident is not made yet (`children: incidents`: the ITSM
            // failed, the parent was being made, the attempt died): its
            // alert fires in Azure all the same, and its group is over.
            RecordState::Claimed if group.is_some() && record.incident.is_none() => {}
            // The bridge resolved it (its own resolve), the alert resolved
            // first, an earlier firing's incident: nothing to tell Azure.
            _ => return Need::Nothing,
        }
        if record.azure.sent.is_some_and(|s| s >= mark) {
            return Need::Nothing;
        }
        if record.azure.lease_until > now {
            return Need::Wait(
                "a round's lease on the alert still runs (it is telling Azure, or died doing so)",
            );
        }
        Need::Call {
            recovering: record.azure.lease_until != 0,
        }
    }

    /// Leases the record, tells Azure, records what it was told (or that
    /// it can never be told, and why).
    async fn tell(
        &self,
        record: CorrelationRecord,
        change: &IncidentChange,
        target: AlertState,
        recovering: bool,
        now: i64,
    ) -> Result<Done, Told> {
        let lease = AzureSync {
            lease_until: now + self.settings.lease_secs,
            ..record.azure.clone()
        };
        let leased = self
            .rewrite(&record, lease)
            .await
            .map_err(|e| Told::Deferred(e.to_string()))?;
        let alert_id = &record.alert_id;
        // A round died around its call: Azure may have the state already.
        if recovering {
            match self.azure.current(alert_id).await {
                Ok(state) if state >= target => {
                    return self
                        .finish(leased, mark_for(target), ActionOutcome::AlreadySet, None)
                        .await;
                }
                Ok(_) => {}
                // Still unsure whether Azure has it: stay unsure.
                Err(e) => return self.failed(leased, e, true).await,
            }
        }
        let comment = self.comment(change, target);
        match self.azure.change(alert_id, target, &comment).await {
            Ok(()) => {
                self.finish(leased, mark_for(target), ActionOutcome::Sent, None)
                    .await
            }
            Err(e) => self.failed(leased, e, false).await,
        }
    }

    /// Records, under a claim left behind, the incident the feed shows
    /// with the claim's key: what a takeover's search would find.
    async fn adopt(
        &self,
        record: &CorrelationRecord,
        change: &IncidentChange,
    ) -> Result<CorrelationRecord, StoreError> {
        let now = (self.clock)();
        let adopted = CorrelationRecord {
            state: RecordState::Open,
            incident: Some(change.incident.clone()),
            lease_until: 0,
            version: record.version + 1,
            updated_at: now,
            ..record.clone()
        };
        self.store.put(&adopted, Some(record.version), now).await?;
        tracing::info!(alert_id = ?record.alert_id, incident = %change.incident.number, "recorded the incident an attempt created and left unrecorded");
        Ok(adopted)
    }

    /// After a failed call; `unsure`: an earlier call may have taken effect
    /// (the check before calling again failed), so the next round asks too.
    async fn failed(
        &self,
        leased: CorrelationRecord,
        e: AzureError,
        unsure: bool,
    ) -> Result<Done, Told> {
        match e {
            AzureError::NotFound => {
                tracing::info!(alert_id = ?leased.alert_id, "Azure no longer has the alert; recorded, not retried");
                self.finish(leased, AzureMark::Gone, ActionOutcome::Gone, None)
                    .await
            }
            // Never doable for this alert: recorded with the reason, so the
            // watermark moves past it and no later round asks again.
            e if e.is_final_for_the_alert() => {
                let why = e.to_string();
                self.finish(
                    leased,
                    AzureMark::Skipped,
                    ActionOutcome::Skipped,
                    Some(why),
                )
                .await
            }
            // Timed out or failed on Azure's side: the change may have
            // happened. The lease is left run out, so the next round asks
            // Azure before calling again.
            AzureError::Unavailable(m) => {
                self.release(leased, true).await;
                Err(Told::Deferred(m))
            }
            // Refused before anything changed: the next round calls again
            // (asking first if an earlier call may have taken effect).
            other => {
                self.release(leased, unsure).await;
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
        detail: Option<String>,
    ) -> Result<Done, Told> {
        let done = AzureSync {
            sent: Some(mark),
            lease_until: 0,
        };
        // If this fails the lease stays; the next round asks Azure first.
        self.rewrite(&leased, done)
            .await
            .map_err(|e| Told::Deferred(format!("recording {mark:?} failed: {e}")))?;
        Ok((outcome, detail))
    }

    /// Ends a lease after a failed call: at once, and marked for asking
    /// Azure first when the call may have taken effect (`uncertain`).
    async fn release(&self, leased: CorrelationRecord, uncertain: bool) {
        let released = AzureSync {
            lease_until: if uncertain { (self.clock)() } else { 0 },
            ..leased.azure.clone()
        };
        if let Err(e) = self.rewrite(&leased, released).await {
            tracing::warn!(error = %e, "could not release the sync lease; it runs out by itself");
        }
    }

    /// Writes the record that follows `prev` with `azure` as its sync part,
    /// conditional on `prev`'s version.
    async fn rewrite(
        &self,
        prev: &CorrelationRecord,
        azure: AzureSync,
    ) -> Result<CorrelationRecord, StoreError> {
        let now = (self.clock)();
        // Closed in the ITSM and in Azure: the record ends like a finished
        // one. Not a child incident's: closed in Azure for its parent, it
        // may itself be open (made after a person closed the parent, out of
        // the cascade's reach), and its alert's Resolved, however late,
        // must find the record to resolve it.
        let child = prev
            .incident
            .as_ref()
            .is_some_and(IncidentRef::is_child_incident);
        // Nor a claim's: its alert's queued Fired is still to be recorded.
        let finished = !child && prev.state != RecordState::Claimed;
        let expires_at = match azure.sent {
            Some(AzureMark::Closed) if finished => prev
                .expires_at
                .min(now.saturating_add(self.settings.record_ttl_secs)),
            _ => prev.expires_at,
        };
        let next = CorrelationRecord {
            azure,
            version: prev.version + 1,
            updated_at: now,
            expires_at,
            ..prev.clone()
        };
        self.store.put(&next, Some(prev.version), now).await?;
        Ok(next)
    }
}

fn mark_for(target: AlertState) -> AzureMark {
    match target {
        AlertState::Closed => AzureMark::Closed,
        _ => AzureMark::Acknowledged,
    }
}

enum Need {
    /// The record is a claim left behind whose incident the feed shows:
    /// record it (as the attempt taking over would, finding it), then call.
    Adopt,
    Nothing,
    /// Not now, for this reason.
    Wait(&'static str),
    Call {
        recovering: bool,
    },
}

/// What a finished change did, and why when that is not plain.
type Done = (ActionOutcome, Option<String>);

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
