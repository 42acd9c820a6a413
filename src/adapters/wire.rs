//! ITSM requests as values: built once per operation by an ITSM's wire
//! format, then either sent (real clients) or only shown (dry-run). A
//! record id enters a request path only as a [`PathId`], which checks it;
//! the change feeds' paging is in `feed.rs`.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::ItsmError;

mod feed;

pub use feed::{FeedCursor, change_page};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItsmRequest {
    pub method: &'static str,
    /// Path and query, relative to the instance URL.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl ItsmRequest {
    pub fn new(
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Self {
        let mut path = path.to_string();
        if !query.is_empty() {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            path.push('?');
            path.push_str(&q.finish());
        }
        ItsmRequest { method, path, body }
    }
}

/// Refuses a draft with a parent for an ITSM without child incidents
/// (start-up refuses `children: incidents` for them; this is the port's
/// contract should one reach the client anyway). Nothing is sent.
pub fn no_parent(kind: &str, draft: &IncidentDraft) -> Result<(), ItsmError> {
    match &draft.parent {
        Some(_) => Err(ItsmError::Rejected {
            status: 0,
            message: format!(
                "{kind} has no child incidents: group.children \"incidents\" needs ServiceNow; \
                 use \"notes\""
            ),
        }),
        None => Ok(()),
    }
}

/// How one ITSM spells each operation on the wire.
pub trait WireFormat: Send + Sync {
    fn kind(&self) -> &'static str;
    fn create(&self, draft: &IncidentDraft) -> ItsmRequest;
    fn find(&self, correlation_key: &str) -> ItsmRequest;
    /// The requests a resolve takes, in order (a later one may use what an
    /// earlier one answered). These three put the incident's id into paths:
    /// `Rejected` when it is not one ([`PathId`]).
    fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<Vec<ItsmRequest>, ItsmError>;
    fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError>;
    fn note(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError>;
    fn set_priority(
        &self,
        incident: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<Vec<ItsmRequest>, ItsmError>;
}

/// The requests sent (or, in dry-run, that would be sent), for `replay`.
#[derive(Debug, Default)]
pub struct RequestLog {
    requests: Mutex<Vec<ItsmRequest>>,
}

impl RequestLog {
    pub fn push(&self, request: ItsmRequest) {
        self.requests.lock().expect("log lock").push(request);
    }

    pub fn take(&self) -> Vec<ItsmRequest> {
        std::mem::take(&mut *self.requests.lock().expect("log lock"))
    }
}

/// Percent-encodes one path segment (BMC's ids may hold `|`). Only
/// [`PathId`] uses it: an id reaches a path through its check or not at all.
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A correlation key as the ITSM clients put it into queries. Keys are
/// `azmon-` and hex digits; an empty value, a quote or a `^` would widen
/// or break the ITSM's query, so anything else is refused before sending.
pub fn checked_key(key: &str) -> Result<&str, ItsmError> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ItsmError::Rejected {
            status: 0,
            message: "refusing to query the ITSM with an empty or unsafe correlation key".into(),
        });
    }
    Ok(key)
}

/// A record id (from an ITSM answer or a stored record) before it goes
/// into a request path or a query: letters, digits and `|`, `_`, `-`
/// only, 1 to 64 of them (ServiceNow's 32-hex `sys_id`, BMC's
/// `000000000000101` or `INC…|INC…`, Jira's `OPS-12`), so that no `..`,
/// `/`, `%` or quote can steer a request elsewhere or widen a query.
///
/// # Errors
/// `Rejected` (status 0, nothing was sent) naming the ITSM and the id.
pub fn checked_id<'a>(itsm: &str, id: &'a str) -> Result<&'a str, ItsmError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '|' | '_' | '-'));
    if ok {
        return Ok(id);
    }
    let shown: String = id.chars().take(80).collect();
    let cut = if shown.len() < id.len() { "…" } else { "" };
    Err(ItsmError::Rejected {
        status: 0,
        message: format!(
            "refusing to send {itsm} a request for record id {shown:?}{cut}: an id holds 1 to 64 \
             letters, digits, `|`, `_` or `-`"
        ),
    })
}

/// A record id as one request path segment. Every path builder takes one,
/// and [`PathId::new`] is the one place that checks it ([`checked_id`]):
/// no path can be built from an id that was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathId(String);

impl PathId {
    /// # Errors
    /// As [`checked_id`].
    pub fn new(itsm: &str, id: &str) -> Result<PathId, ItsmError> {
        checked_id(itsm, id).map(|id| PathId(segment(id)))
    }

    /// What dry-run shows where an id it cannot know would go (`<what>`,
    /// encoded): never an id, never a dot segment, always one segment.
    pub fn placeholder(what: &str) -> PathId {
        PathId(segment(&format!("<{what}>")))
    }

    /// The encoded segment.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PathId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unix seconds of a time written `2026-12-01T17:00:00.000+0000`, as BMC's
/// AR REST and Jira answer (RFC 3339 but for the offset's missing colon).
pub fn compact_offset_time(s: &str) -> Option<i64> {
    let (date, zone) = s.split_at(s.len().checked_sub(5)?);
    let date = date.split('.').next()?;
    let text = format!("{date}{}:{}", zone.get(..3)?, zone.get(3..)?);
    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_checked_ids_become_path_segments() {
        assert_eq!(
            PathId::new("BMC Helix", "INC000000000101|INC000000000101")
                .unwrap()
                .as_str(),
            "INC000000000101%7CINC000000000101"
        );
        let long = "a".repeat(65);
        for bad in [
            "", "..", ".", "../x", "%2e%2e", "a/b", "a\\b", "a?b", "a#b", "a b", &long,
        ] {
            let err = PathId::new("BMC Helix", bad).unwrap_err();
            assert!(
                matches!(&err, ItsmError::Rejected { status: 0, message }
                    if message.contains("BMC Helix") && message.contains("record id")),
                "{bad:?}: {err:?}"
            );
        }
        let shown = PathId::placeholder("Request ID of ../x");
        assert!(!shown.as_str().contains('/') && shown.as_str().starts_with("%3C"));
    }
}
