//! The three ports the domain talks through. Adapters implement them; tests
//! swap them.

use async_trait::async_trait;

use super::correlation::{CorrelationRecord, IncidentRef};
use super::mapping::{IncidentDraft, Resolution};

/// Who called, once the token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app_id: String,
    pub tenant_id: String,
    pub token_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token that may not call us (audience, caller, role): 403.
    #[error("{0}")]
    Forbidden(String),
    /// Signing keys cannot be had right now: 503.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Verifies the value of the `Authorization` header.
    async fn verify(&self, authorization: Option<&str>) -> Result<Caller, AuthError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItsmError {
    /// Worth retrying: connection failure, timeout, 5xx, a hibernating instance.
    #[error("ITSM unavailable: {0}")]
    Unavailable(String),
    /// The ITSM asked us to slow down (429), perhaps saying for how long.
    #[error("ITSM rate limiting: {message}")]
    Throttled {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The ITSM refused the request; retrying will not help until
    /// someone changes the configuration or credentials.
    #[error("ITSM rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveOutcome {
    Resolved,
    /// A person resolved, closed or cancelled it first: nothing was changed.
    AlreadyClosed,
    /// The incident no longer exists in the ITSM.
    NotFound,
}

#[async_trait]
pub trait ItsmClient: Send + Sync {
    /// `servicenow`, `bmc-helix`, …: stored with each record.
    fn kind(&self) -> &'static str;
    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError>;
    /// Finds the incident carrying `correlation_key`, to recover from an
    /// attempt that created one but died before recording it.
    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError>;
    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError>;
    /// Puts a resolved incident back in progress, with `note` in its journal.
    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError>;
    /// Adds `note` to the incident's journal (work notes, work log).
    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The conditional write lost: someone else wrote first. Carries the
    /// live record found, when the store hands it back with the failure.
    #[error("the record changed concurrently")]
    Conflict(Option<Box<CorrelationRecord>>),
    #[error("correlation store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait CorrelationStore: Send + Sync {
    /// The record for `alert_id`, unless absent or expired.
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError>;
    /// Writes `record` if the stored version is `expected` (`None`: no live
    /// record exists). Anything else is a `Conflict`.
    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError>;
}
