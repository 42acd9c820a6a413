//! ServiceNow Table API requests for the three operations.

use serde_json::{Map, Value, json};

use crate::adapters::wire::{ItsmRequest, PathId, WireFormat};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::ItsmError;

pub const INCIDENT_PATH: &str = "/api/now/table/incident";

/// Incident fields that come from configuration, not from the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFields {
    /// `caller_id`, by user name or display name.
    pub caller: Option<String>,
    /// `assignment_group`, by name.
    pub assignment_group: Option<String>,
    pub category: Option<String>,
    /// `close_code` set when resolving; choices differ by release.
    pub close_code: String,
    /// Fixed `close_notes`; by default they say which alert resolved when.
    pub close_notes: Option<String>,
}

impl Default for IncidentFields {
    fn default() -> Self {
        IncidentFields {
            caller: None,
            assignment_group: None,
            category: None,
            close_code: "Solution provided".to_string(),
            close_notes: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceNowFormat {
    pub fields: IncidentFields,
}

impl WireFormat for ServiceNowFormat {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    fn create(&self, d: &IncidentDraft) -> ItsmRequest {
        let mut body = Map::new();
        let mut set = |k: &str, v: &str| {
            body.insert(k.to_string(), Value::String(v.to_string()));
        };
        set("short_description", &d.short_description);
        set("description", &d.description);
        set("impact", &d.impact.to_string());
        set("urgency", &d.urgency.to_string());
        set("correlation_id", &d.correlation_key);
        set("correlation_display", &d.correlation_label);
        // Routing rules win over the configured defaults.
        let optional = [
            ("cmdb_ci", d.configuration_item.as_deref()),
            (
                "caller_id",
                d.caller.as_deref().or(self.fields.caller.as_deref()),
            ),
            (
                "assignment_group",
                d.assignment_group
                    .as_deref()
                    .or(self.fields.assignment_group.as_deref()),
            ),
            (
                "category",
                d.category.as_deref().or(self.fields.category.as_deref()),
            ),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                set(k, v);
            }
        }
        for (k, v) in &d.fields {
            set(k, v);
        }
        // A group's child incident: the parent by its number, the incident
        // table's display value, as the create reads reference fields.
        if let Some(parent) = &d.parent {
            set("parent_incident", &parent.number);
        }
        ItsmRequest::new(
            "POST",
            INCIDENT_PATH,
            &[
                ("sysparm_fields", "sys_id,number"),
                // Reference fields (cmdb_ci, caller_id, assignment_group) by name.
                ("sysparm_input_display_value", "true"),
                ("sysparm_exclude_reference_link", "true"),
            ],
            Some(Value::Object(body)),
        )
    }

    fn find(&self, correlation_key: &str) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            INCIDENT_PATH,
            &[
                (
                    "sysparm_query",
                    &format!("correlation_id={correlation_key}"),
                ),
                ("sysparm_fields", "sys_id,number,correlation_id"),
                ("sysparm_limit", "10"),
            ],
            None,
        )
    }

    fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.resolve_request(&sys_id(incident)?, resolution)])
    }

    fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.reopen_request(&sys_id(incident)?, note)])
    }

    fn note(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.note_request(&sys_id(incident)?, note)])
    }

    fn set_priority(
        &self,
        incident: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.priority_request(
            &sys_id(incident)?,
            impact,
            urgency,
        )])
    }
}

/// The incident's `sys_id`, checked for its place in a path.
pub fn sys_id(incident: &IncidentRef) -> Result<PathId, ItsmError> {
    PathId::new("ServiceNow", &incident.id)
}

impl ServiceNowFormat {
    /// Reads an incident's state (after a resolve was refused).
    pub fn state_request(&self, sys_id: &PathId) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &format!("{INCIDENT_PATH}/{sys_id}"),
            &[("sysparm_fields", "sys_id,number,state")],
            None,
        )
    }

    pub fn resolve_request(&self, sys_id: &PathId, resolution: &Resolution) -> ItsmRequest {
        self.update_request(
            sys_id,
            json!({
                "state": "6",
                "close_code": self.fields.close_code,
                "close_notes": self.fields.close_notes.as_deref().unwrap_or(&resolution.notes),
            }),
        )
    }

    /// Back to In Progress, with the reason in the journal.
    pub fn reopen_request(&self, sys_id: &PathId, note: &str) -> ItsmRequest {
        self.update_request(sys_id, json!({"state": "2", "work_notes": note}))
    }

    /// `work_notes` is a journal field: each write appends an entry.
    pub fn note_request(&self, sys_id: &PathId, note: &str) -> ItsmRequest {
        self.update_request(sys_id, json!({"work_notes": note}))
    }

    /// ServiceNow computes the priority from these two.
    pub fn priority_request(&self, sys_id: &PathId, impact: u8, urgency: u8) -> ItsmRequest {
        self.update_request(
            sys_id,
            json!({"impact": impact.to_string(), "urgency": urgency.to_string()}),
        )
    }

    /// One PATCH of the incident.
    pub fn update_request(&self, sys_id: &PathId, body: Value) -> ItsmRequest {
        ItsmRequest::new(
            "PATCH",
            &format!("{INCIDENT_PATH}/{sys_id}"),
            &[("sysparm_fields", "sys_id,number,state")],
            Some(body),
        )
    }
}
