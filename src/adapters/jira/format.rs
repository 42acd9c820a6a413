//! Jira Cloud REST API v3 requests for the incident operations (Jira Data
//! Center's v2 paths differ only in the version; v3 is what is built here).

use serde_json::{Map, Value, json};

use super::adf;
use crate::adapters::wire::{ItsmRequest, WireFormat, segment};
use crate::domain::correlation::IncidentRef;
use crate::domain::mapping::{IncidentDraft, Resolution};
use crate::domain::text::clean_line;

pub const ISSUE_PATH: &str = "/rest/api/3/issue";
pub const SEARCH_PATH: &str = "/rest/api/3/search/jql";
/// Every issue the bridge opens carries it: how the sync role finds them
/// (JQL cannot match a label by prefix).
pub const BRIDGE_LABEL: &str = "itsm-bridge";
/// Jira's summary holds 255 characters.
pub const SUMMARY_MAX: usize = 255;

/// Where the affected resource (the first configuration item) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceField {
    None,
    /// A label (spaces become `_`: labels may not hold them).
    Label,
    /// A component of that name (it must exist in the project).
    Component,
    /// A text custom field, e.g. `customfield_10050`.
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraFields {
    /// `JIRA_PROJECT`: the project key.
    pub project: String,
    /// `JIRA_ISSUE_TYPE`: by name.
    pub issue_type: String,
    /// Priority names for levels 1 (highest) to 5.
    pub priorities: Vec<String>,
    pub resource: ResourceField,
    /// Transition names (or their target status names).
    pub resolve_transition: String,
    pub reopen_transition: String,
    /// Set on the resolve transition when its screen has the field.
    pub resolution: String,
    /// A Jira Service Management request type: its field and value.
    pub request_type: Option<(String, String)>,
}

impl Default for JiraFields {
    fn default() -> Self {
        JiraFields {
            project: "OPS".into(),
            issue_type: "Incident".into(),
            priorities: ["Highest", "High", "Medium", "Low", "Lowest"]
                .map(String::from)
                .to_vec(),
            resource: ResourceField::Label,
            resolve_transition: "Resolved".into(),
            reopen_transition: "Reopen".into(),
            resolution: "Done".into(),
            request_type: None,
        }
    }
}

/// A label Jira accepts: no spaces, at most 255 characters.
pub fn label(s: &str) -> String {
    clean_line(s, 255)
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct JiraFormat {
    pub fields: JiraFields,
}

impl JiraFormat {
    pub fn issue_path(key: &str) -> String {
        format!("{ISSUE_PATH}/{}", segment(key))
    }

    /// The issue's status (and labels), to decide before transitioning.
    pub fn status_request(incident: &IncidentRef) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &Self::issue_path(&incident.number),
            &[("fields", "status,labels")],
            None,
        )
    }

    pub fn transitions_request(incident: &IncidentRef) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &format!("{}/transitions", Self::issue_path(&incident.number)),
            &[("expand", "transitions.fields")],
            None,
        )
    }

    /// Moves the issue through transition `id`, with `resolution` when the
    /// transition's screen has that field, and `comment`.
    pub fn transition_request(
        incident: &IncidentRef,
        id: &str,
        resolution: Option<&str>,
        comment: &str,
    ) -> ItsmRequest {
        let mut body = json!({
            "transition": {"id": id},
            "update": {"comment": [{"add": {"body": adf::lines(comment)}}]},
        });
        if let Some(r) = resolution {
            body["fields"] = json!({"resolution": {"name": r}});
        }
        ItsmRequest::new(
            "POST",
            &format!("{}/transitions", Self::issue_path(&incident.number)),
            &[],
            Some(body),
        )
    }

    fn comment_request(incident: &IncidentRef, note: &str) -> ItsmRequest {
        ItsmRequest::new(
            "POST",
            &format!("{}/comment", Self::issue_path(&incident.number)),
            &[],
            Some(json!({"body": adf::lines(note)})),
        )
    }
}

impl WireFormat for JiraFormat {
    fn kind(&self) -> &'static str {
        "jira"
    }

    fn create(&self, d: &IncidentDraft) -> ItsmRequest {
        let f = &self.fields;
        let mut labels = vec![BRIDGE_LABEL.to_string(), d.correlation_key.clone()];
        let mut fields = Map::new();
        fields.insert("project".into(), json!({"key": f.project}));
        fields.insert("issuetype".into(), json!({"name": f.issue_type}));
        fields.insert(
            "summary".into(),
            json!(clean_line(d.short_description.as_str(), SUMMARY_MAX)),
        );
        fields.insert("description".into(), adf::description(&d.description));
        let level = usize::from(d.impact.clamp(1, 5)) - 1;
        if let Some(name) = f.priorities.get(level).or(f.priorities.last()) {
            fields.insert("priority".into(), json!({"name": name}));
        }
        if let Some(ci) = &d.configuration_item {
            match &f.resource {
                ResourceField::None => {}
                ResourceField::Label => labels.push(label(ci)),
                ResourceField::Component => {
                    fields.insert("components".into(), json!([{"name": ci}]));
                }
                ResourceField::Custom(id) => {
                    fields.insert(id.clone(), json!(ci));
                }
            }
        }
        if let Some((field, value)) = &f.request_type {
            fields.insert(field.clone(), json!(value));
        }
        // Routing rules' extra fields, by Jira's own names (text values).
        for (k, v) in &d.fields {
            fields.insert(k.clone(), json!(v));
        }
        fields.insert("labels".into(), json!(labels));
        ItsmRequest::new(
            "POST",
            ISSUE_PATH,
            &[],
            Some(Value::Object(
                [("fields".to_string(), Value::Object(fields))]
                    .into_iter()
                    .collect(),
            )),
        )
    }

    /// The enhanced JQL search (the old `/search` is being removed); the
    /// key is checked to be `[A-Za-z0-9-]` before it is quoted here.
    fn find(&self, correlation_key: &str) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            SEARCH_PATH,
            &[
                (
                    "jql",
                    &format!("labels = \"{correlation_key}\" ORDER BY created ASC"),
                ),
                ("fields", "labels,status"),
                ("maxResults", "10"),
            ],
            None,
        )
    }

    fn resolve(&self, incident: &IncidentRef, resolution: &Resolution) -> Vec<ItsmRequest> {
        vec![
            Self::status_request(incident),
            Self::transitions_request(incident),
            Self::transition_request(
                incident,
                &format!("<id of {:?}>", self.fields.resolve_transition),
                Some(&self.fields.resolution),
                &resolution.notes,
            ),
        ]
    }

    fn reopen(&self, incident: &IncidentRef, note: &str) -> Vec<ItsmRequest> {
        vec![
            Self::transitions_request(incident),
            Self::transition_request(
                incident,
                &format!("<id of {:?}>", self.fields.reopen_transition),
                None,
                note,
            ),
        ]
    }

    fn note(&self, incident: &IncidentRef, note: &str) -> Vec<ItsmRequest> {
        vec![Self::comment_request(incident, note)]
    }
}
