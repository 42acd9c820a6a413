//! The ports of the sync role (ITSM → Azure): the ITSM's recent changes,
//! the store's reverse lookup and watermark, and Azure's alert states.

use std::time::Duration;

use async_trait::async_trait;

use super::{CorrelationStore, ItsmError, StoreError};
use crate::domain::correlation::{CorrelationRecord, IncidentRef};

/// Incidents changed in `[since, until)`, Unix seconds, `page_size` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeWindow {
    pub since: i64,
    pub until: i64,
    pub page_size: usize,
}

/// Where an incident stands, as far as its Azure alert cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    /// New, assigned, on hold, pending: nobody has said anything yet.
    Open,
    /// Someone took it into work.
    InProgress,
    /// Resolved, closed or cancelled.
    Closed,
}

/// One incident carrying a bridge correlation key, as the ITSM shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentChange {
    pub correlation_key: String,
    pub incident: IncidentRef,
    pub status: IncidentStatus,
    /// The ITSM's own word for the status (`Resolved`, `7`→`Closed`, …).
    pub status_label: String,
    /// Unix seconds of the incident's last update.
    pub updated_at: i64,
    /// Who updated it last, as the ITSM names them.
    pub updated_by: Option<String>,
}

/// One page of changes, oldest first; `next` continues after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePage {
    pub changes: Vec<IncidentChange>,
    pub next: Option<String>,
}

/// An ITSM's change feed.
#[async_trait]
pub trait IncidentChanges: Send + Sync {
    /// `servicenow`, `bmc-helix`, …: names the watermark.
    fn kind(&self) -> &'static str;

    /// Incidents with a bridge correlation key updated within `window`,
    /// oldest update first, one page at a time: `cursor` is the previous
    /// page's `next` (`None` for the first). A page may repeat an incident
    /// an earlier page held (pages are cut at update times); it never
    /// skips one that stayed within the window. Read-only.
    ///
    /// # Errors
    /// Any [`ItsmError`]; nothing was changed anywhere.
    async fn changed(
        &self,
        window: ChangeWindow,
        cursor: Option<&str>,
    ) -> Result<ChangePage, ItsmError>;
}

/// Where the sync role keeps its place between rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// One per ITSM kind.
    pub name: String,
    /// Every change before this (Unix seconds) has been dealt with.
    pub since: i64,
    /// Azure asked us to wait until then (Unix seconds; 0: it did not).
    pub azure_not_before: i64,
    /// Bumped on every write; writes are conditional on it.
    pub version: u64,
}

/// The store, as the sync role needs it beyond [`CorrelationStore`].
#[async_trait]
pub trait SyncStore: CorrelationStore {
    /// The live record whose incident carries `correlation_key`: the
    /// reverse of the store's key. Read-only.
    ///
    /// # Errors
    /// `Unavailable` only.
    async fn by_key(
        &self,
        correlation_key: &str,
        now: i64,
    ) -> Result<Option<CorrelationRecord>, StoreError>;

    /// The watermark called `name`, if one was ever written.
    ///
    /// # Errors
    /// `Unavailable` only.
    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError>;

    /// Writes `watermark` if the stored one's version is `expected` (`None`:
    /// none stored), so that of two overlapping rounds one moves it.
    ///
    /// # Errors
    /// `Conflict(None)` when the version differs, `Unavailable` otherwise.
    async fn put_watermark(
        &self,
        watermark: &Watermark,
        expected: Option<u64>,
    ) -> Result<(), StoreError>;
}

/// An Azure Monitor alert's user-set state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    New,
    Acknowledged,
    Closed,
}

impl AlertState {
    /// As Azure spells it (`newState=…`, `essentials.alertState`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::New => "New",
            AlertState::Acknowledged => "Acknowledged",
            AlertState::Closed => "Closed",
        }
    }
}

/// What can go wrong telling Azure, by what it means for the round: the
/// alert's change settled for good (`NotFound`, `NotAnAlert`, `Rejected`),
/// every change held until a person acts (`Denied`), or this change held
/// for a later round (`Throttled`, `Unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// Azure has no such alert (older than its 30-day retention, or
    /// deleted): final, never worth retrying.
    #[error("Azure has no such alert")]
    NotFound,
    /// Final for this alert, nothing sent: Alerts Management does not take
    /// its id (a budget alert's `…/Microsoft.CostManagement/alerts/…`, the
    /// rule id an action group's test notification carries).
    #[error("Alerts Management does not take this id ({0}): the alert's state cannot be changed")]
    NotAnAlert(String),
    /// Final for this alert: Resource Manager refused this request for it
    /// (400, 405, 409, 422); asking again would be refused again.
    #[error("Azure refused the request for this alert (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Someone must act, and every alert is refused alike: the role
    /// assignment is missing (401/403), no token could be had, or Resource
    /// Manager refuses the request's form (an API version it does not
    /// know, Microsoft.AlertsManagement not registered). The message names
    /// what to fix.
    #[error("{0}")]
    Denied(String),
    /// Transient: Azure asked us to slow down, perhaps saying for how long.
    #[error("Azure throttled the request")]
    Throttled { retry_after: Option<Duration> },
    /// Transient: unreachable, timed out, or failing on Azure's side.
    #[error("Azure unavailable: {0}")]
    Unavailable(String),
}

impl AzureError {
    /// Whether this alert can never be told (the change is settled without
    /// telling Azure), as opposed to one to retry or a halt for everyone.
    pub fn is_final_for_the_alert(&self) -> bool {
        matches!(
            self,
            AzureError::NotAnAlert(_) | AzureError::Rejected { .. }
        )
    }
}

/// Azure Monitor's Alerts Management API for one app registration.
#[async_trait]
pub trait AlertStates: Send + Sync {
    /// The alert's current state. Read-only.
    ///
    /// # Errors
    /// Any [`AzureError`]; `NotAnAlert` before anything is sent.
    async fn current(&self, alert_id: &str) -> Result<AlertState, AzureError>;

    /// Sets the alert's state, with `comment` in its history.
    ///
    /// **Idempotent in state**: setting the state it has changes nothing
    /// but may add the comment to the history again.
    ///
    /// # Errors
    /// Any [`AzureError`]; `NotAnAlert` before anything is sent; after a
    /// transient one the state may or may not have changed.
    async fn change(
        &self,
        alert_id: &str,
        state: AlertState,
        comment: &str,
    ) -> Result<(), AzureError>;
}
