//! What the state machine is told by configuration: the severity table,
//! leases and record lifetimes, retries, the refire policy and routing.

use crate::domain::correlation::{NEVER, RecordState};
use crate::domain::incident::mapping::SeverityTable;
use crate::domain::incident::routing::Routing;
use crate::domain::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct Settings {
    pub severity: SeverityTable,
    /// How long a claim protects an attempt that is talking to the ITSM.
    /// Must exceed the longest attempt (the Lambda timeout).
    pub lease_secs: i64,
    /// How long a record lives after its last change, once nothing more is
    /// expected of it (see [`Settings::expires_at`]).
    pub ttl_secs: i64,
    /// Retries of ITSM calls within the event's deadline.
    pub retry: RetryPolicy,
    /// What a Fired does for an alert id that has fired and resolved before.
    pub refire: RefirePolicy,
    /// Routing rules and templates.
    pub routing: Routing,
    /// How long queued work holds later notifications of its alert in the
    /// queue; longer than the queue keeps a message before dead-lettering it.
    pub queue_horizon_secs: i64,
    /// `ITSM_CREATE_SETTLE_SECS`: overrides the ITSM's own figure of how
    /// long an unanswered create may take to show in a search.
    pub create_settle_secs: Option<i64>,
}

impl Settings {
    /// When a record written at `now` in `state` expires. A live record
    /// (incident open, attempt under way, nothing sent yet) never does, so
    /// that a Resolved months later still finds it; except for alert kinds
    /// Azure never resolves (`stateless`): Azure keeps an alert 30 days,
    /// so their records end `ttl_secs` after their last change like any.
    pub fn expires_at(&self, state: RecordState, stateless: bool, now: i64) -> i64 {
        if state.is_live() && !stateless {
            NEVER
        } else {
            now.saturating_add(self.ttl_secs)
        }
    }
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
            // Past a 4-day queue's messages; the configuration sets it past
            // the longest retention SQS allows (14 days).
            queue_horizon_secs: 5 * 24 * 3600,
            create_settle_secs: None,
        }
    }
}
