//! Jira's change feed for the sync role: issues with the bridge's label
//! updated within the window, in pages that cannot skip an issue updated
//! between two reads ([`FeedCursor`]). Neither Jira pages safely by
//! itself: Data Center's `startAt` is an offset into a result that moves,
//! and Cloud does not promise what its `nextPageToken` holds to, so every
//! page is a fresh search, ordered `updated ASC, key ASC` from an update
//! second, or `key ASC` after a key within one second (`key >` compares
//! issue numbers within a project; the bridge opens issues in one). The
//! tokens and offsets are only read to learn whether more came.
//!
//! JQL date strings have minute precision and are read in the account's
//! time zone; a bare number is milliseconds since the epoch instead, exact
//! and zone-free, so the bounds are written that way.

use async_trait::async_trait;
use serde_json::Value;

use super::JiraClient;
use crate::adapters::jira::format::{BRIDGE_LABEL, Deployment};
use crate::adapters::wire::{
    FeedCursor, ItsmRequest, change_page, checked_id, checked_key, compact_offset_time,
};
use crate::domain::correlation::IncidentRef;
use crate::domain::ports::{
    ChangePage, ChangeWindow, IncidentChange, IncidentChanges, IncidentStatus, ItsmError,
};

fn request(search: &str, window: ChangeWindow, from: &FeedCursor) -> ItsmRequest {
    let ms = |t: i64| t * 1000;
    let jql = match from {
        FeedCursor::From(t) => format!(
            "labels = \"{BRIDGE_LABEL}\" AND updated >= {} AND updated < {} \
             ORDER BY updated ASC, key ASC",
            ms(*t),
            ms(window.until)
        ),
        FeedCursor::Within { second, after } => {
            let after = after
                .as_ref()
                .map_or(String::new(), |k| format!(" AND key > \"{k}\""));
            format!(
                "labels = \"{BRIDGE_LABEL}\" AND updated >= {} AND updated < {}{after} \
                 ORDER BY key ASC",
                ms(*second),
                ms(second + 1)
            )
        }
    };
    let size = window.page_size.to_string();
    ItsmRequest::new(
        "GET",
        search,
        &[
            ("jql", jql.as_str()),
            ("fields", "labels,status,updated"),
            ("maxResults", size.as_str()),
        ],
        None,
    )
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
        let from = FeedCursor::read(cursor, window)?;
        let search = self.format.search_path();
        let answer = self.send(request(search, window, &from)).await?;
        let body = &answer.body;
        let issues = body["issues"].as_array().cloned().unwrap_or_default();
        // Whether more came after this page; Cloud may answer fewer than
        // asked for and still have more.
        let more = match self.format.fields.deployment {
            Deployment::Cloud => body["isLast"]
                .as_bool()
                .map_or(body["nextPageToken"].is_string(), |last| !last),
            Deployment::DataCenter => {
                let at = body["startAt"].as_u64().unwrap_or(0) + issues.len() as u64;
                at < body["total"].as_u64().unwrap_or(0)
            }
        };
        change_page(
            &issues,
            &from,
            more,
            window,
            |i| {
                let updated = compact_offset_time(i["fields"]["updated"].as_str()?)?;
                Some((updated, i["key"].as_str()?.to_string()))
            },
            |i| change(i, window),
        )
    }
}
