//! The per-alert correlation record and the key that ties it to an incident.
//! A leaf: records are plain data that the store port moves.

use serde::{Deserialize, Serialize};

/// ServiceNow's `correlation_id` holds 100 characters and an alert id is
/// longer (~132) and does not always end in a GUID (`…/alerts/Test_Alert`),
/// so the key is a digest of the whole id: stable, unique per alert (128
/// bits of SHA-256), 38 characters of `[a-z0-9-]`: short enough for BMC's
/// text fields too, and safe in any query.
pub fn correlation_key(alert_id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, alert_id.as_bytes());
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str("azmon-");
    for b in &digest.as_ref()[..16] {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 15)]));
    }
    key
}

pub const KEY_LEN: usize = 38;

/// A digest of a notification's body (32 hex characters): what tells
/// Azure's repeated delivery of a notification from a new one.
pub fn body_digest(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a grouped alert's reference begins (`domain::grouping`): its
/// "incident" is its membership of a group.
pub const GROUP_CHILD: &str = "group:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRef {
    /// The ITSM's record id (ServiceNow sys_id, BMC Request ID).
    pub id: String,
    /// The number people quote (INC0010001).
    pub number: String,
}

impl IncidentRef {
    /// Whether this is a grouped alert's membership, not an incident.
    pub fn is_group_child(&self) -> bool {
        self.id.starts_with(GROUP_CHILD)
    }

    /// Whether this is a grouped alert's membership that also names its own
    /// child incident (`group:<group>/<child>/<incident id>`,
    /// `children: incidents`).
    pub fn is_child_incident(&self) -> bool {
        self.id
            .strip_prefix(GROUP_CHILD)
            .is_some_and(|rest| rest.matches('/').count() == 2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// An attempt holds the alert until `lease_until` while it talks to the
    /// ITSM; after that another attempt may take over (and looks first).
    Claimed,
    /// An incident is open for the alert.
    Open,
    /// The incident was resolved when the alert resolved.
    Resolved,
    /// The alert resolved before any incident existed: remembered so that a
    /// late Fired does not open a stale incident.
    ResolvedWithoutIncident,
    /// The ITSM no longer has the incident (deleted by a person).
    IncidentGone,
    /// Known only through the delivery queue: its notifications wait there
    /// and nothing has been sent to the ITSM yet.
    Queued,
}

/// The `expires_at` of a record that does not expire (DynamoDB: an item
/// without the TTL attribute, which its TTL process never deletes).
pub const NEVER: i64 = i64::MAX;

impl RecordState {
    /// Whether a record in this state is needed however long the alert
    /// takes: an incident is open (a metric alert's Resolved may come months
    /// later), an attempt is under way, or nothing was sent yet.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            RecordState::Claimed | RecordState::Open | RecordState::Queued
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelationRecord {
    pub alert_id: String,
    pub correlation_key: String,
    pub itsm: String,
    pub state: RecordState,
    pub incident: Option<IncidentRef>,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    /// Unix seconds; meaningful only while `Claimed`.
    pub lease_until: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds after which the record counts as absent; [`NEVER`]
    /// while the alert may still need it however long it waits.
    pub expires_at: i64,
    /// Bumped on every write; writes are conditional on it.
    pub version: u64,
    /// The number of the last notification of this alert put on the
    /// delivery queue (0: none ever was).
    #[serde(default)]
    pub queued_seq: u64,
    /// The highest queued notification delivered to the ITSM.
    #[serde(default)]
    pub delivered_seq: u64,
    /// Unix seconds of the last queuing.
    #[serde(default)]
    pub queued_at: i64,
    /// A digest of the last queued notification's body: Azure's repeated
    /// delivery of it is not queued twice.
    #[serde(default)]
    pub queued_digest: Option<String>,
    /// What the sync role has told Azure about this alert's incident.
    #[serde(default)]
    pub azure: AzureSync,
    /// Where the queued notifications stand beyond their numbers: sent,
    /// refused, parked.
    #[serde(default)]
    pub queue: QueueProgress,
    /// Unix seconds before which an empty search for the incident is not
    /// trusted: an attempt that may have created it ended (or its lease
    /// runs out) then, plus the time the ITSM's search may lag its writes.
    /// Kept in the record so that whichever process takes over honours it.
    #[serde(default)]
    pub look_until: i64,
}

/// The delivery queue's side of a record, beside `queued_seq` and
/// `delivered_seq`. Numbers are sent one at a time, in order: number N+1 is
/// sent only once N is confirmed in the queue (`sent_seq`) or its sender's
/// lease ran out (it died, or its send failed: if the message got in, it
/// is ahead of anything sent later). So the queue holds an alert's
/// notifications in number order, and the worker never waits for a gap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueProgress {
    /// The highest number confirmed in the queue.
    pub sent_seq: u64,
    /// Unix seconds until which the sender of `queued_seq` may still be
    /// sending it (meaningful while `queued_seq > sent_seq`).
    pub send_lease_until: i64,
    /// The notification the ITSM refused last, and how many times in a row.
    pub refused_seq: u64,
    pub refusals: u32,
    /// Every parked notification not delivered since, lowest first, and
    /// when the last was parked. Later ones park behind the lowest until
    /// it is redriven; a parked number is never taken for a copy of a
    /// delivered one, whatever was delivered past it.
    pub parked: Vec<u64>,
    pub parked_at: i64,
}

/// The alert state the sync role set in Azure, in the order it may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureMark {
    Acknowledged,
    Closed,
    /// Azure no longer has the alert (past its 30-day retention, or
    /// deleted): nothing more is ever sent for it.
    Gone,
    /// Azure can never be told about this alert (an id Alerts Management
    /// does not take, or a change it refused for good): nothing is sent.
    Skipped,
}

/// The sync role's part of a record: what Azure was told, and the lease of
/// a round that is telling it now (Unix seconds; 0: none). A lease left
/// behind means a round died around its call, so the next one asks Azure
/// before calling again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureSync {
    pub sent: Option<AzureMark>,
    pub lease_until: i64,
}

impl CorrelationRecord {
    /// Whether notifications of this alert still wait in the delivery queue,
    /// so that a later one must queue behind them. Queued work older than
    /// `horizon` seconds is not waited for: by then the queue has delivered
    /// or dead-lettered everything (a queuing whose message never made it
    /// would otherwise hold the alert in the queue for good).
    pub fn has_queued_work(&self, now: i64, horizon: i64) -> bool {
        self.queued_seq > self.delivered_seq && now < self.queued_at.saturating_add(horizon)
            || self.parked_before(u64::MAX, now, PARKED_HORIZON_SECS)
    }

    /// Whether a notification parked in the dead-letter queue, not
    /// delivered since, comes before notification `seq` (and is recent
    /// enough still to be there to redrive: past `horizon` it is gone).
    pub fn parked_before(&self, seq: u64, now: i64, horizon: i64) -> bool {
        let p = &self.queue;
        p.parked.first().is_some_and(|first| *first < seq)
            && now < p.parked_at.saturating_add(horizon)
    }

    /// Records notification `seq` as parked (kept in order, once).
    pub fn park(&mut self, seq: u64, now: i64) {
        let parked = &mut self.queue.parked;
        if let Err(at) = parked.binary_search(&seq) {
            parked.insert(at, seq);
        }
        self.queue.parked_at = now;
    }

    /// Whether number `queued_seq` may still be on its way to the queue:
    /// not confirmed, and its sender's lease not run out.
    pub fn sending(&self, now: i64) -> bool {
        self.queued_seq > self.queue.sent_seq && now < self.queue.send_lease_until
    }
}

/// How long a parked notification holds its alert's later ones: the
/// dead-letter queue's retention (14 days, SQS's most); past it the parked
/// message is gone and waiting for it would hold the alert for good.
pub const PARKED_HORIZON_SECS: i64 = 14 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_short_and_distinct() {
        let a = "/subscriptions/aaaa/providers/Microsoft.CostManagement/alerts/Test_Alert";
        let b = "/subscriptions/aaaa/providers/Microsoft.Insights/activityLogAlerts/Test_Alert";
        assert_eq!(correlation_key(a), correlation_key(a));
        assert_ne!(correlation_key(a), correlation_key(b));
        assert_eq!(correlation_key(a).len(), KEY_LEN);
        assert!(
            correlation_key(a)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        );
    }
}
