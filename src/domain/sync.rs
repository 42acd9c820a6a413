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
//! A change Azure can never be told (an alert id Alerts Management does
//! not take, a refusal for good) is dealt with: recorded `skipped` with its
//! reason. Only what may succeed later holds the watermark, and a round
//! says which change holds it, why, and for how long (`held_too_long`
//! past `max_hold_secs`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::domain::ports::{
    AlertStates, ChangeWindow, Clock, IncidentChanges, ItsmError, StoreError, SyncStore, Watermark,
};

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
    /// A watermark older than this (seconds) is held too long: a change
    /// keeps failing, or the rounds fall behind; the round says so.
    pub max_hold_secs: i64,
    /// Show what would be sent; write nothing anywhere.
    pub dry_run: bool,
    /// `RECORD_TTL_DAYS`: how long a record lives once Azure was told its
    /// incident closed (an open incident's record never expires).
    pub record_ttl_secs: i64,
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
            max_hold_secs: 3600,
            dry_run: false,
            record_ttl_secs: 90 * 24 * 3600,
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
    /// Azure can never be told (an id Alerts Management does not take, a
    /// refusal for good): recorded with the reason in `detail`, never
    /// retried; the watermark moves past it.
    Skipped,
    /// Azure refuses every change until a person acts (role assignment,
    /// API version); retried next round.
    Denied,
    /// Azure or the store failed for now; retried next round.
    Deferred,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    /// Changed incidents read from the ITSM.
    pub examined: usize,
    /// Incidents that needed nothing (not ours, already told, the bridge's own).
    pub needing_nothing: usize,
    pub actions: Vec<Action>,
    /// Where the next round starts (Unix seconds).
    pub watermark: i64,
    /// How far the watermark lags this round's clock (seconds); about
    /// the settle time when nothing holds it.
    pub watermark_age_secs: i64,
    /// What keeps the watermark back, when something does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<Hold>,
    /// The watermark is older than `max_hold_secs`.
    pub held_too_long: bool,
    /// The round did nothing: Azure asked to wait until this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<i64>,
}

/// What keeps the watermark back: a change not dealt with yet (its
/// incident and alert), or a limit of the round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// Unix seconds: the watermark stays here.
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    pub reason: String,
}

const PAGE_LIMIT: &str =
    "more changes than SYNC_MAX_PAGES pages of SYNC_PAGE_SIZE; the next round goes on";
const TIME_BUDGET: &str = "the round's time budget ran out; the next round goes on";

impl Hold {
    fn limit(at: i64, reason: &str) -> Hold {
        Hold {
            at,
            incident: None,
            alert_id: None,
            reason: reason.to_string(),
        }
    }
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

/// The alert groups' side of a round (`domain::grouping` implements it): a
/// group's parent incident that a person resolved closes the group, and its
/// children still open are closed in Azure, each once.
#[async_trait::async_trait]
pub trait GroupParents: Send + Sync {
    /// Whether `correlation_key` is a group parent's; if it is, and the
    /// group had not ended, ends it as resolved by a person (unless `read_only`).
    ///
    /// # Errors
    /// The group store failed; the change is read again next round.
    async fn closed_by_person(
        &self,
        correlation_key: &str,
        read_only: bool,
    ) -> Result<Option<ClosedParent>, StoreError>;

    /// Whether `correlation_key` is an alert that joined (or is joining) a
    /// group: its incident, if any, is a group's child incident, whose
    /// record only the alert's own attempts write.
    ///
    /// # Errors
    /// The group store failed; the change is read again next round.
    async fn is_child(&self, correlation_key: &str) -> Result<bool, StoreError>;
}

/// A group whose parent a person resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedParent {
    /// Its id (`<key>#<generation>`): the children's references name it.
    pub group: String,
    /// The correlation keys of its children still open: empty when the
    /// group had ended by the bridge (its resolve policy or idleness).
    pub open_children: Vec<String>,
}

pub struct AlertSync {
    itsm: Arc<dyn IncidentChanges>,
    store: Arc<dyn SyncStore>,
    azure: Arc<dyn AlertStates>,
    settings: SyncSettings,
    clock: Clock,
    groups: Option<Arc<dyn GroupParents>>,
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
            groups: None,
        }
    }

    /// With alert groups: a parent a person resolved closes its children's
    /// alerts.
    #[must_use]
    pub fn with_groups(mut self, groups: Arc<dyn GroupParents>) -> AlertSync {
        self.groups = Some(groups);
        self
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
            let why = format!("Azure asked to wait until {}", w.azure_not_before);
            let paused = RoundReport {
                paused_until: Some(w.azure_not_before),
                ..RoundReport::default()
            };
            return Ok(self.aged(paused, now, w.since, Some(Hold::limit(w.since, &why))));
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
        // The earliest change not dealt with, and how far the pages went:
        // every change before `reached` was dealt with, by an earlier round
        // (before `start`) or examined by this one (a held one is in `held`).
        let mut held: Option<Hold> = None;
        let mut hold = |h: Hold| {
            if held.as_ref().is_none_or(|k| h.at < k.at) {
                held = Some(h);
            }
        };
        let mut reached = start;
        let mut halt: Option<Halt> = None;
        let mut cursor: Option<String> = None;
        let started = std::time::Instant::now();
        let mut out_of_time = false;
        // Why the round stopped short of the window's end, if it did.
        let mut cut: Option<&str> = None;
        // Pages count against the limit once they pass the watermark: the
        // overlap re-read before it never uses up a round, so each round
        // gets past where the last one stopped.
        let mut new_pages = 0;
        for page_no in 0.. {
            if new_pages == self.settings.max_pages {
                // The rest waits for the next round.
                tracing::info!(pages = page_no, "sync round stopped at its page limit");
                cut = Some(PAGE_LIMIT);
                break;
            }
            if started.elapsed() > self.settings.budget {
                cut = Some(TIME_BUDGET);
                break;
            }
            let page = self.itsm.changed(window, cursor.as_deref()).await?;
            for change in &page.changes {
                if started.elapsed() > self.settings.budget {
                    // Out of time: this change and the rest wait.
                    reached = reached.max(change.updated_at);
                    cut = Some(TIME_BUDGET);
                    out_of_time = true;
                    break;
                }
                report.examined += 1;
                let actions = match self.decide(change, now, &mut halt, started).await {
                    Decision::Settled(a) => a,
                    Decision::Held {
                        actions,
                        alert_id,
                        why,
                    } => {
                        hold(Hold {
                            at: change.updated_at,
                            incident: Some(change.incident.number.clone()),
                            alert_id: (!alert_id.is_empty()).then_some(alert_id),
                            reason: why,
                        });
                        actions
                    }
                };
                if actions.is_empty() {
                    report.needing_nothing += 1;
                }
                report.actions.extend(actions);
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
                reached = reached.max(last.updated_at);
                if last.updated_at > start {
                    new_pages += 1;
                }
            }
        }
        let since = held.as_ref().map_or(reached, |h| h.at.min(reached));
        let held_by = match held {
            Some(h) => Some(Hold { at: since, ..h }),
            None => cut.map(|why| Hold::limit(since, why)),
        };
        if !self.settings.dry_run {
            let pause = match &halt {
                Some(Halt::Throttled(wait)) => now + wait.as_secs() as i64,
                _ => 0,
            };
            self.save(name, since, pause, stored).await;
        }
        Ok(self.aged(report, now, since, held_by))
    }

    /// `report` with where the watermark stands, how old it is, and what
    /// holds it.
    fn aged(
        &self,
        report: RoundReport,
        now: i64,
        since: i64,
        held_by: Option<Hold>,
    ) -> RoundReport {
        let age = now - since;
        RoundReport {
            watermark: since,
            watermark_age_secs: age,
            held_too_long: age > self.settings.max_hold_secs,
            held_by,
            ..report
        }
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
}

mod comment;
mod parent;
mod tell;
use tell::{Decision, Halt};

#[cfg(test)]
mod tests;
