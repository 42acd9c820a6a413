//! ServiceNow's change feed for the sync role: incidents whose
//! `correlation_id` is a bridge key, by `sys_updated_on`, in pages that
//! cannot skip an incident updated between two reads ([`FeedCursor`]):
//! each page is an encoded query of ANDed conditions only, from an update
//! second ordered by `sys_updated_on` then `sys_id`, or within one second
//! by `sys_id>` (a string comparison; `sys_id`s are 32 lowercase hex
//! digits, so ServiceNow's order and ours agree). No `sysparm_offset`.
//! Date literals in an encoded query are read as UTC (values inside
//! `javascript:` would be the user's time zone), and answers come in UTC.

use async_trait::async_trait;
use serde_json::Value;
use time::PrimitiveDateTime;
use time::macros::format_description;

use super::{ServiceNowClient, field, incident};
use crate::adapters::wire::{FeedCursor, ItsmRequest, change_page, checked_key};
use crate::domain::ports::{
    ChangePage, ChangeWindow, IncidentChange, IncidentChanges, IncidentStatus, ItsmError,
};

const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

fn to_text(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.format(FORMAT).unwrap_or_default())
        .unwrap_or_default()
}

fn from_text(s: &str) -> Option<i64> {
    PrimitiveDateTime::parse(s, FORMAT)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

fn changes_request(window: ChangeWindow, from: &FeedCursor) -> ItsmRequest {
    let keys = "correlation_idSTARTSWITHazmon-";
    let query = match from {
        FeedCursor::From(t) => format!(
            "{keys}^sys_updated_on>={}^sys_updated_on<{}^ORDERBYsys_updated_on^ORDERBYsys_id",
            to_text(*t),
            to_text(window.until)
        ),
        FeedCursor::Within { second, after } => {
            let after = after
                .as_ref()
                .map_or(String::new(), |id| format!("^sys_id>{id}"));
            format!(
                "{keys}^sys_updated_on>={}^sys_updated_on<{}{after}^ORDERBYsys_id",
                to_text(*second),
                to_text(*second + 1)
            )
        }
    };
    ItsmRequest::new(
        "GET",
        "/api/now/table/incident",
        &[
            ("sysparm_query", &query),
            (
                "sysparm_fields",
                "sys_id,number,state,correlation_id,sys_updated_on,sys_updated_by",
            ),
            ("sysparm_limit", &window.page_size.to_string()),
        ],
        None,
    )
}

fn status(state: &str) -> (IncidentStatus, &'static str) {
    match state {
        "2" => (IncidentStatus::InProgress, "In Progress"),
        "3" => (IncidentStatus::Open, "On Hold"),
        "6" => (IncidentStatus::Closed, "Resolved"),
        "7" => (IncidentStatus::Closed, "Closed"),
        "8" => (IncidentStatus::Closed, "Canceled"),
        _ => (IncidentStatus::Open, "New"),
    }
}

/// One record of the answer, if it is a bridge incident we can act on.
fn change(v: &Value) -> Option<IncidentChange> {
    let key = field(v, "correlation_id").filter(|k| k.starts_with("azmon-"))?;
    checked_key(&key).ok()?;
    let (status, label) = status(v.get("state").and_then(Value::as_str).unwrap_or(""));
    Some(IncidentChange {
        correlation_key: key,
        incident: incident(v)?,
        status,
        status_label: label.into(),
        updated_at: from_text(&field(v, "sys_updated_on")?)?,
        updated_by: field(v, "sys_updated_by"),
    })
}

#[async_trait]
impl IncidentChanges for ServiceNowClient {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn changed(
        &self,
        window: ChangeWindow,
        cursor_text: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        let from = FeedCursor::read(cursor_text, window)?;
        let answer = self.send(changes_request(window, &from)).await?;
        let records = answer
            .body
            .get("result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // A page as long as asked for may have more after it.
        let more = records.len() >= window.page_size;
        change_page(
            &records,
            &from,
            more,
            window,
            |r| {
                Some((
                    from_text(&field(r, "sys_updated_on")?)?,
                    field(r, "sys_id")?,
                ))
            },
            change,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_text() {
        assert_eq!(to_text(1_796_144_400), "2026-12-01 17:00:00");
        assert_eq!(from_text(&to_text(1_796_144_400)), Some(1_796_144_400));
    }
}
