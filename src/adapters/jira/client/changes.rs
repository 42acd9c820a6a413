//! Jira's change feed for the sync role: issues with the bridge's label
//! updated within the window, oldest first, by JQL (Cloud's enhanced search
//! pages by `nextPageToken`, Data Center's `/search` by `startAt`). JQL dates have minute precision and are read in
//! the account's time zone, so the query asks relative to Jira's own clock
//! (`updated >= "-Nm"`, a minute wider than the window) and the window is
//! applied here to each issue's `updated` time.

use async_trait::async_trait;
use serde_json::Value;

use super::JiraClient;
use crate::adapters::jira::format::{BRIDGE_LABEL, Deployment};
use crate::adapters::wire::{ItsmRequest, checked_id, checked_key, compact_offset_time};
use crate::domain::correlation::IncidentRef;
use crate::domain::ports::{
    ChangePage, ChangeWindow, IncidentChange, IncidentChanges, IncidentStatus, ItsmError,
};

fn request(search: &str, cloud: bool, window: ChangeWindow, cursor: Option<&str>) -> ItsmRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let minutes = (now - window.since).max(0) / 60 + 2;
    let jql =
        format!("labels = \"{BRIDGE_LABEL}\" AND updated >= \"-{minutes}m\" ORDER BY updated ASC");
    let size = window.page_size.to_string();
    let mut query = vec![
        ("jql", jql.as_str()),
        ("fields", "labels,status,updated"),
        ("maxResults", size.as_str()),
    ];
    if let Some(token) = cursor {
        query.push((if cloud { "nextPageToken" } else { "startAt" }, token));
    }
    ItsmRequest::new("GET", search, &query, None)
}

fn change(issue: &Value, window: ChangeWindow) -> Option<IncidentChange> {
    let fields = &issue["fields"];
    let updated = compact_offset_time(fields["updated"].as_str()?)?;
    if updated < window.since || updated >= window.until {
        return None;
    }
    let key = fields["labels"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.starts_with("azmon-") && checked_key(l).is_ok())?;
    let number = issue["key"].as_str()?;
    checked_id("Jira", number).ok()?;
    let status = &fields["status"];
    Some(IncidentChange {
        correlation_key: key.to_string(),
        incident: IncidentRef {
            id: issue["id"].as_str().unwrap_or(number).to_string(),
            number: number.to_string(),
        },
        status: match status["statusCategory"]["key"].as_str() {
            Some("done") => IncidentStatus::Closed,
            Some("indeterminate") => IncidentStatus::InProgress,
            _ => IncidentStatus::Open,
        },
        status_label: status["name"].as_str().unwrap_or("").to_string(),
        updated_at: updated,
        // Who moved it is in the changelog only; not worth a call per issue.
        updated_by: None,
    })
}

#[async_trait]
impl IncidentChanges for JiraClient {
    fn kind(&self) -> &'static str {
        "jira"
    }

    async fn changed(
        &self,
        window: ChangeWindow,
        cursor: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        let cloud = self.format.fields.deployment == Deployment::Cloud;
        let search = self.format.search_path();
        let answer = self.send(request(search, cloud, window, cursor)).await?;
        let body = &answer.body;
        let issues = body["issues"].as_array().cloned().unwrap_or_default();
        let next = if cloud {
            body["nextPageToken"]
                .as_str()
                .filter(|_| body["isLast"] != true)
                .map(str::to_string)
        } else {
            // startAt + what came, while short of the total.
            let at = body["startAt"].as_u64().unwrap_or(0) + issues.len() as u64;
            (!issues.is_empty() && at < body["total"].as_u64().unwrap_or(0)).then(|| at.to_string())
        };
        Ok(ChangePage {
            changes: issues.iter().filter_map(|i| change(i, window)).collect(),
            next,
        })
    }
}
