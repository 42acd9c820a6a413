//! Jira REST API requests for the incident operations: v3 on Jira Cloud
//! (rich text as Atlassian Document Format, the enhanced JQL search), v2 on
//! Jira Data Center, which has neither (rich text as a string of wiki
//! markup, `/search`).

use serde_json::{Map, Value, json};

use super::adf;
use crate::adapters::wire::{ItsmRequest, PathId, WireFormat};
use crate::domain::alert::text::clean_line;
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::ItsmError;

/// Where the bridge's Jira runs, which decides the API it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deployment {
    /// Jira Cloud: REST API v3.
    #[default]
    Cloud,
    /// Jira Data Center (and Server): REST API v2.
    DataCenter,
}
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
    pub deployment: Deployment,
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
            deployment: Deployment::Cloud,
        }
    }
}

/// A label Jira accepts: no spaces, at most 255 characters.
fn label(s: &str) -> String {
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
    fn api(&self) -> &'static str {
        match self.fields.deployment {
            Deployment::Cloud => "/rest/api/3",
            Deployment::DataCenter => "/rest/api/2",
        }
    }

    /// The enhanced JQL search on Cloud (the old `/search` is being
    /// removed there); Data Center has only `/search`.
    pub fn search_path(&self) -> &'static str {
        match self.fields.deployment {
            Deployment::Cloud => "/rest/api/3/search/jql",
            Deployment::DataCenter => "/rest/api/2/search",
        }
    }

    /// Rich text as the API wants it: an ADF document (v3), or a string
    /// (v2) kept out of wiki markup in a `{noformat}` block.
    fn rich(&self, text: &str, adf: impl FnOnce(&str) -> Value) -> Value {
        match self.fields.deployment {
            Deployment::Cloud => adf(text),
            Deployment::DataCenter => json!(format!(
                "{{noformat}}\n{}\n{{noformat}}",
                text.replace("{noformat}", "{ noformat }")
            )),
        }
    }

    pub fn issue_path(&self, key: &PathId) -> String {
        format!("{}/issue/{key}", self.api())
    }

    /// The issue's status (and labels), to decide before transitioning.
    pub fn status_request(&self, key: &PathId) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &self.issue_path(key),
            &[("fields", "status,labels")],
            None,
        )
    }

    pub fn transitions_request(&self, key: &PathId) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &format!("{}/transitions", self.issue_path(key)),
            &[("expand", "transitions.fields")],
            None,
        )
    }

    /// Moves the issue through transition `id`, with `resolution` when the
    /// transition's screen has that field, and `comment`.
    pub fn transition_request(
        &self,
        key: &PathId,
        id: &str,
        resolution: Option<&str>,
        comment: &str,
    ) -> ItsmRequest {
        let mut body = json!({
            "transition": {"id": id},
            "update": {"comment": [{"add": {"body": self.rich(comment, adf::lines)}}]},
        });
        if let Some(r) = resolution {
            body["fields"] = json!({"resolution": {"name": r}});
        }
        ItsmRequest::new(
            "POST",
            &format!("{}/transitions", self.issue_path(key)),
            &[],
            Some(body),
        )
    }

    /// The priority named for an impact level (`JIRA_PRIORITIES`), if any.
    fn priority(&self, impact: u8) -> Option<&String> {
        let p = &self.fields.priorities;
        p.get(usize::from(impact.clamp(1, 5)) - 1).or(p.last())
    }

    /// Edits the issue's priority (`None` without `JIRA_PRIORITIES`).
    pub fn priority_request(&self, key: &PathId, impact: u8) -> Option<ItsmRequest> {
        let name = self.priority(impact)?;
        Some(ItsmRequest::new(
            "PUT",
            &self.issue_path(key),
            &[],
            Some(json!({"fields": {"priority": {"name": name}}})),
        ))
    }

    pub fn comment_request(&self, key: &PathId, note: &str) -> ItsmRequest {
        ItsmRequest::new(
            "POST",
            &format!("{}/comment", self.issue_path(key)),
            &[],
            Some(json!({"body": self.rich(note, adf::lines)})),
        )
    }
}

/// The issue's key, checked for its place in a path.
pub fn issue_key(incident: &IncidentRef) -> Result<PathId, ItsmError> {
    PathId::new("Jira", &incident.number)
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
        fields.insert(
            "description".into(),
            self.rich(&d.description, adf::description),
        );
        if let Some(name) = self.priority(d.impact) {
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
            &format!("{}/issue", self.api()),
            &[],
            Some(Value::Object(
                [("fields".to_string(), Value::Object(fields))]
                    .into_iter()
                    .collect(),
            )),
        )
    }

    /// The key is checked to be `[A-Za-z0-9-]` before it is quoted here.
    fn find(&self, correlation_key: &str) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            self.search_path(),
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

    fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        let key = issue_key(incident)?;
        Ok(vec![
            self.status_request(&key),
            self.transitions_request(&key),
            self.transition_request(
                &key,
                &format!("<id of {:?}>", self.fields.resolve_transition),
                Some(&self.fields.resolution),
                &resolution.notes,
            ),
        ])
    }

    fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        let key = issue_key(incident)?;
        Ok(vec![
            self.transitions_request(&key),
            self.transition_request(
                &key,
                &format!("<id of {:?}>", self.fields.reopen_transition),
                None,
                note,
            ),
        ])
    }

    fn note(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.comment_request(&issue_key(incident)?, note)])
    }

    fn set_priority(
        &self,
        incident: &IncidentRef,
        impact: u8,
        _urgency: u8,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(self
            .priority_request(&issue_key(incident)?, impact)
            .into_iter()
            .collect())
    }
}
