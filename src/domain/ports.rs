//! The ports the domain talks through: who called, the ITSM, the
//! correlation store and the clock. Adapters implement them; tests swap
//! them. Each contract below is what every adapter must keep; the suites in
//! `tests/api/store.rs` and `tests/api/itsm_contract.rs` hold every adapter
//! to it. Errors say what they mean for the caller; which answer the
//! sender gets for them is decided in one place on the inbound side.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::correlation::{CorrelationRecord, IncidentRef};
use crate::domain::incident::mapping::{IncidentDraft, Resolution};

mod breaker;
mod groups;
mod sync;
pub use breaker::*;
pub use groups::*;
pub use sync::*;

/// Unix seconds now. Only compared with times the same clock produced
/// (leases, expiries, token lifetimes); swapped in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Who called, once the token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app_id: String,
    pub tenant_id: String,
    pub token_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no credentials at all: the caller should
    /// authenticate (and learn how from the challenge).
    #[error("no Authorization header; Secure Webhook sends a Bearer token")]
    MissingCredentials,
    /// The credentials are unusable (malformed, badly signed, expired,
    /// issued by someone else); the message says which.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose holder may not call us (audience, caller, role).
    #[error("{0}")]
    Forbidden(String),
    /// The signing keys cannot be had right now: the same token may pass later.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Verifies the value of the `Authorization` header. Never logs or
    /// returns the token itself.
    ///
    /// # Errors
    /// - [`AuthError::MissingCredentials`] when `authorization` is `None`;
    /// - [`AuthError::Unauthenticated`] when the token is not one we accept;
    /// - [`AuthError::Forbidden`] when it is valid but not for us;
    /// - [`AuthError::KeysUnavailable`] when it could not be checked now.
    async fn verify(&self, authorization: Option<&str>) -> Result<Caller, AuthError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItsmError {
    /// Transient: the ITSM could not be reached, timed out, failed on its
    /// side, or is hibernating. The same call may succeed later.
    #[error("ITSM unavailable: {0}")]
    Unavailable(String),
    /// Transient, and the request may have taken effect: it went out and
    /// no answer came (a time-out, a connection lost mid-request), or the
    /// answer said success without what it should carry.
    #[error("ITSM did not answer: {0}")]
    Unanswered(String),
    /// Transient: the ITSM asked us to slow down, perhaps saying for how long.
    #[error("ITSM rate limiting: {message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Permanent until someone acts: the ITSM refused the request
    /// (credentials, permissions, configuration, data policy), or we
    /// refused to send it. `status` is the ITSM's own HTTP status, for
    /// logs and metrics (0 when nothing was sent).
    #[error("ITSM rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Transient, on the bridge's side and not the ITSM's: another attempt
    /// holds what this one needs (a group's parent incident being
    /// created), or the bridge's own shared state was busy. Retried and
    /// queued like `Unavailable`, but it says nothing about the ITSM: the
    /// breaker does not open on it.
    #[error("busy: {0}")]
    Busy(String),
}

impl ItsmError {
    /// Whether the same call may succeed later without anyone acting.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ItsmError::Rejected { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveOutcome {
    Resolved,
    /// A person resolved, closed or cancelled it first: nothing was changed.
    AlreadyClosed,
    /// The incident no longer exists in the ITSM.
    NotFound,
}

/// One ITSM. Every method may fail with any [`ItsmError`]: `Unavailable`
/// and `Throttled` are worth retrying (the state machine does, within the
/// event's deadline), `Rejected` needs a configuration or credentials fix
/// and is never retried. A failed call may still have taken effect (an
/// answer lost after the ITSM committed): see each method.
#[async_trait]
pub trait ItsmClient: Send + Sync {
    /// `servicenow`, `bmc-helix`, …: stored with each record.
    fn kind(&self) -> &'static str;

    /// How long (seconds) after a create that went unanswered
    /// ([`ItsmError::Unanswered`]) the incident may still appear in
    /// [`find`](ItsmClient::find): the ITSM may still be committing it
    /// (ServiceNow finishes a request its client gave up on, within its
    /// 60 s REST transaction quota), or its search may lag its writes
    /// (Jira's index). An empty answer within this window is no proof.
    fn create_settle_secs(&self) -> i64 {
        0
    }

    /// Opens an incident from `draft`, carrying `draft.correlation_key`
    /// where [`find`](ItsmClient::find) looks for it.
    ///
    /// **Not idempotent**: each success is a new incident. After a failed
    /// or unanswered create, call `find` before creating again.
    ///
    /// With `draft.parent` (a group's child incident) the incident is made
    /// under that parent where the ITSM has child incidents (ServiceNow's
    /// `parent_incident`); the others answer `Rejected` (status 0) and send
    /// nothing.
    ///
    /// # Errors
    /// `Unavailable` also when the ITSM answered success without an
    /// incident in it (the create may or may not have happened).
    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError>;

    /// The incident carrying exactly `correlation_key`, if any: how a lost
    /// create is recovered. Only an incident whose key matches exactly is
    /// returned, whatever the ITSM's query matched. Read-only.
    ///
    /// # Errors
    /// `Rejected` (status 0) for an empty key or one with characters
    /// outside `[A-Za-z0-9-]`: it would not be safe in the ITSM's query.
    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError>;

    /// The alert under `correlation_key` resolved before any incident was
    /// made for it (a takeover's `find` found none): what the client holds
    /// for it besides incidents is settled. A group counts its child out
    /// (a ServiceNow child incident not made yet: its alert still joined).
    /// Idempotent. The ITSM clients hold nothing: the default does nothing.
    async fn resolved_without_incident(&self, _correlation_key: &str) -> Result<(), ItsmError> {
        Ok(())
    }

    /// Resolves `incident` with `resolution`'s notes.
    ///
    /// **Idempotent in effect**: resolving a resolved incident answers
    /// `Resolved` or `AlreadyClosed` and changes nothing a person set; an
    /// incident that is gone answers `NotFound`, not an error.
    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError>;

    /// Puts a resolved incident back in progress, with `note` in its journal.
    ///
    /// **Not idempotent**: each success adds the note again (the state
    /// change itself repeats harmlessly).
    ///
    /// # Errors
    /// `Rejected` when the incident does not exist.
    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError>;

    /// Adds `note` to the incident's journal (work notes, work log).
    ///
    /// **Not idempotent**: each success adds one entry.
    ///
    /// # Errors
    /// `Rejected` when the incident does not exist.
    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError>;

    /// Sets the incident's priority from `impact` and `urgency` (1 most
    /// severe to 4 or 5, as in [`IncidentDraft`]): ServiceNow's impact and
    /// urgency, BMC's Impact and Urgency, Jira's priority by impact.
    ///
    /// **Idempotent**: setting the levels it has changes nothing.
    ///
    /// # Errors
    /// `Rejected` when the incident does not exist.
    async fn set_priority(
        &self,
        incident: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The conditional write lost: someone else wrote first. Carries the
    /// live record found, when the store hands it back with the failure.
    #[error("the record changed concurrently")]
    Conflict(Option<Box<CorrelationRecord>>),
    /// Transient: the store could not be read or written; nothing changed
    /// that the caller can rely on.
    #[error("correlation store unavailable: {0}")]
    Unavailable(String),
}

/// One record per alert id, written only conditionally on its version.
#[async_trait]
pub trait CorrelationStore: Send + Sync {
    /// The record for `alert_id`, unless absent or expired at `now`.
    ///
    /// # Errors
    /// `Unavailable` only.
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError>;

    /// Writes `record` if the live record's version is `expected` (`None`:
    /// no live record exists). Idempotent only in that a repeat loses.
    ///
    /// # Errors
    /// `Conflict` when the version differs (with the live record when the
    /// store can hand it back at no extra cost), `Unavailable` otherwise.
    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// One notification handed to the delivery queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedNotification<'a> {
    pub alert_id: &'a str,
    /// Orders the queue: notifications with the same group are delivered
    /// one after the other, in the order they were queued (the alert's
    /// correlation key).
    pub group: &'a str,
    /// The notification's number among its alert's queued ones.
    pub seq: u64,
    /// Tells Azure's repeated delivery of a notification from a new one.
    pub digest: &'a str,
    /// The notification as Azure sent it (common alert schema JSON).
    pub body: &'a [u8],
}

/// The delivery queue could not take a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery queue unavailable: {0}")]
pub struct QueueError(pub String);

/// Where notifications wait while the ITSM cannot take them: SQS FIFO in
/// AWS, an outbox in the embedded store locally.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Stores `notification` durably behind every earlier one of its group.
    /// After `Ok` it is delivered (or dead-lettered) eventually, even if this
    /// process dies at once.
    ///
    /// **Idempotent within minutes**: sending the same `digest` again for
    /// the same group may be dropped as a duplicate.
    ///
    /// # Errors
    /// [`QueueError`] when it may not have been stored (an answer lost
    /// after the queue took it included: sending it again is safe).
    async fn send(&self, notification: &QueuedNotification<'_>) -> Result<(), QueueError>;
}
