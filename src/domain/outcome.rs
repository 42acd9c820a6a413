//! What the state machine answers for one notification: what it did, or
//! why it could not. The inbound side turns these into its own answers.

use serde::Serialize;

use crate::domain::correlation::{CorrelationRecord, IncidentRef};
use crate::domain::ports::{ItsmError, QueueError, StoreError};

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

/// Why a notification was not processed. None of these lose it: the
/// record is left so that the same notification, delivered again, continues.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The correlation store failed or kept losing conditional writes.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ITSM failed after the retries the event's deadline allowed.
    #[error(transparent)]
    Itsm(#[from] ItsmError),
    /// Another delivery holds a live claim on this alert.
    #[error("another delivery of this alert is being processed right now; retry later")]
    InProgress,
    /// Earlier notifications of this alert wait in the delivery queue: this
    /// one must go behind them (carries the record that says so).
    #[error("earlier notifications of this alert are still queued")]
    Behind(Box<CorrelationRecord>),
    /// The delivery queue refused the notification: nothing durable holds it.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Processed {
    /// An outcome before its ITSM tally is added.
    pub fn new(outcome: Outcome, incident: Option<IncidentRef>) -> Processed {
        Processed {
            outcome,
            incident,
            itsm_calls: 0,
            itsm_ms: 0,
        }
    }
}
