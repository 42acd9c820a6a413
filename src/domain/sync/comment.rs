//! The comment a round leaves in the Azure alert's history.

use super::AlertSync;
use crate::domain::alert::text::clean_line;
use crate::domain::ports::{AlertState, IncidentChange};

impl AlertSync {
    /// The comment in the alert's history: the incident, its status and
    /// who set it, one line (ITSM text is cleaned like alert text).
    pub(super) fn comment(&self, change: &IncidentChange, target: AlertState) -> String {
        let itsm = match self.itsm.kind() {
            "servicenow" => "ServiceNow",
            "bmc-helix" => "BMC Helix",
            "jira" => "Jira",
            other => other,
        };
        let noun = if itsm == "Jira" { "issue" } else { "incident" };
        let who = change
            .updated_by
            .as_deref()
            .map(|w| format!(" by {}", clean_line(w, 100)))
            .unwrap_or_default();
        let verb = match target {
            AlertState::Closed => "closed",
            _ => "acknowledged",
        };
        format!(
            "{itsm} {noun} {} set to {}{who}; {verb} by itsm-bridge",
            clean_line(change.incident.number.as_str(), 40),
            clean_line(change.status_label.as_str(), 40),
        )
    }
}
