//! The per-alert correlation record and the key that ties it to an incident.

use serde::{Deserialize, Serialize};

use super::alert::Alert;

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

/// What a person sees next to the key: rule and the id's last segment.
pub fn correlation_label(alert: &Alert) -> String {
    let tail = alert.alert_id.rsplit('/').next().unwrap_or(&alert.alert_id);
    let mut label = String::with_capacity(100);
    label.push_str("Azure Monitor ");
    if let Some(rule) = &alert.alert_rule {
        label.push_str(rule);
        label.push(' ');
    }
    label.push_str(tail);
    super::mapping::clean_line(label, 100)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRef {
    /// The ITSM's record id (ServiceNow sys_id, BMC Request ID).
    pub id: String,
    /// The number people quote (INC0010001).
    pub number: String,
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
    /// Unix seconds after which the record counts as absent.
    pub expires_at: i64,
    /// Bumped on every write; writes are conditional on it.
    pub version: u64,
}

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
