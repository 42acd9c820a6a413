//! BMC Helix's change feed for the sync role: `HPD:IncidentInterface`
//! entries whose correlation field holds a bridge key, by `Last Modified
//! Date`, in pages that cannot skip an entry updated between two reads
//! ([`FeedCursor`]): qualifications of ANDed terms only, from an update
//! second sorted by `Last Modified Date` then `Incident Number`
//! (`sort=A.asc,B.asc`), or within one second by `'Incident Number' >
//! "…"` (a character field: compared as text; numbers are `INC` and a
//! fixed count of digits, so text order is number order). No `offset`.
//! Dates go into the qualification as Unix seconds, which AR System reads
//! as UTC whatever the server's time zone.

use async_trait::async_trait;
use serde_json::Value;

use super::{BmcClient, entries, value};
use crate::adapters::bmc::format::INCIDENT_FORM;
use crate::adapters::wire::{
    FeedCursor, ItsmRequest, change_page, checked_key, compact_offset_time,
};
use crate::domain::correlation::IncidentRef;
use crate::domain::ports::{
    ChangePage, ChangeWindow, IncidentChange, IncidentChanges, IncidentStatus, ItsmError,
};

const MODIFIED: &str = "Last Modified Date";
const NUMBER: &str = "Incident Number";

fn status(label: &str) -> IncidentStatus {
    match label {
        "In Progress" => IncidentStatus::InProgress,
        "Resolved" | "Closed" | "Cancelled" => IncidentStatus::Closed,
        _ => IncidentStatus::Open,
    }
}

/// AR answers dates as `2026-12-01T17:00:00.000+0000` (or Unix seconds).
fn unix(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    compact_offset_time(v.as_str()?)
}

impl BmcClient {
    fn changes_request(&self, window: ChangeWindow, from: &FeedCursor) -> ItsmRequest {
        let field = &self.format.fields.correlation_field;
        let keys = format!("'{field}' LIKE \"azmon-%\"");
        let (q, sort) = match from {
            FeedCursor::From(t) => (
                format!(
                    "{keys} AND '{MODIFIED}' >= {t} AND '{MODIFIED}' < {}",
                    window.until
                ),
                format!("{MODIFIED}.asc,{NUMBER}.asc"),
            ),
            FeedCursor::Within { second, after } => {
                let after = after
                    .as_ref()
                    .map_or(String::new(), |n| format!(" AND '{NUMBER}' > \"{n}\""));
                (
                    format!(
                        "{keys} AND '{MODIFIED}' >= {second} AND '{MODIFIED}' < {}{after}",
                        second + 1
                    ),
                    format!("{NUMBER}.asc"),
                )
            }
        };
        ItsmRequest::new(
            "GET",
            &format!("/api/arsys/v1/entry/{INCIDENT_FORM}"),
            &[
                ("q", &q),
                (
                    "fields",
                    &format!("values({NUMBER},Status,{field},{MODIFIED},Last Modified By)"),
                ),
                ("sort", &sort),
                ("limit", &window.page_size.to_string()),
            ],
            None,
        )
    }

    fn change(&self, entry: &Value) -> Option<IncidentChange> {
        let key = value(entry, &self.format.fields.correlation_field)
            .filter(|k| k.starts_with("azmon-"))?;
        checked_key(&key).ok()?;
        let number = value(entry, NUMBER)?;
        let label = value(entry, "Status").unwrap_or_default();
        Some(IncidentChange {
            correlation_key: key,
            incident: IncidentRef {
                id: number.clone(),
                number,
            },
            status: status(&label),
            status_label: label,
            updated_at: unix(&entry["values"][MODIFIED])?,
            updated_by: value(entry, "Last Modified By"),
        })
    }
}

#[async_trait]
impl IncidentChanges for BmcClient {
    fn kind(&self) -> &'static str {
        "bmc-helix"
    }

    async fn changed(
        &self,
        window: ChangeWindow,
        cursor_text: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        let from = FeedCursor::read(cursor_text, window)?;
        let answer = self.send(self.changes_request(window, &from)).await?;
        let all = entries(&answer.body);
        // A page as long as asked for may have more after it.
        let more = all.len() >= window.page_size;
        change_page(
            &all,
            &from,
            more,
            window,
            |e| Some((unix(&e["values"][MODIFIED])?, value(e, NUMBER)?)),
            |e| self.change(e),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ar_dates_read_as_utc() {
        let t = unix(&Value::from("2026-12-01T17:00:00.000+0000")).unwrap();
        assert_eq!(t, 1_796_144_400);
        let t2 = unix(&Value::from("2026-12-01T18:00:00.000+0100")).unwrap();
        assert_eq!(t2, t);
        assert_eq!(unix(&Value::from(1_796_144_400)), Some(t));
    }
}
