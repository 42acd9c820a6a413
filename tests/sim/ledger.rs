//! What Azure saw and what reached the ITSM: the facts the invariants are
//! checked against.

use std::collections::BTreeMap;

use itsm_bridge::domain::sync::RoundReport;

/// One attempt Azure made to deliver a notification.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub notif: usize,
    pub copy: u8,
    pub n: usize,
    pub answered: Option<(i64, u16)>,
    pub gave_up: bool,
    /// The invocation ended with a 2xx answer, whether or not Azure still
    /// waited for it.
    pub succeeded: bool,
}

/// What Azure saw and what reached the ITSM, per notification.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub attempts: Vec<Attempt>,
    /// First attempt's start and first 2xx answer, per notification.
    pub first_start: BTreeMap<usize, i64>,
    pub first_ok: BTreeMap<usize, i64>,
    /// Digests that went through the state machine (inline or worker).
    pub delivered: BTreeMap<String, i64>,
    /// The attempt each webhook task served.
    pub webhook_tasks: BTreeMap<usize, usize>,
    /// Queued notifications the worker delivered: (time, group, seq, digest).
    pub worker_delivered: Vec<(i64, String, u64, String)>,
    pub reports: Vec<RoundReport>,
}
