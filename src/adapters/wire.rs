//! ITSM requests as values: built once per operation by an ITSM's wire
//! format, then either sent (real clients) or only shown (dry-run).

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::domain::correlation::IncidentRef;
use crate::domain::mapping::{IncidentDraft, Resolution};
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

/// How one ITSM spells each operation on the wire.
pub trait WireFormat: Send + Sync {
    fn kind(&self) -> &'static str;
    fn create(&self, draft: &IncidentDraft) -> ItsmRequest;
    fn find(&self, correlation_key: &str) -> ItsmRequest;
    /// The requests a resolve takes, in order (a later one may use what an
    /// earlier one answered).
    fn resolve(&self, incident: &IncidentRef, resolution: &Resolution) -> Vec<ItsmRequest>;
    fn reopen(&self, incident: &IncidentRef, note: &str) -> Vec<ItsmRequest>;
    fn note(&self, incident: &IncidentRef, note: &str) -> Vec<ItsmRequest>;
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

/// Percent-encodes one path segment (record ids may hold `|` or `/`).
pub fn segment(s: &str) -> String {
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

/// A record id taken from an ITSM answer, before it goes into a request
/// path: letters, digits and `|`, `_`, `-` only (ServiceNow's 32-hex
/// `sys_id`, BMC's `000000000000101` or `INC…|INC…`), so that no `..`, `/`
/// or `%` in an answer can steer a request elsewhere.
pub fn checked_id<'a>(itsm: &str, id: &'a str) -> Result<&'a str, ItsmError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '|' | '_' | '-'));
    if ok {
        Ok(id)
    } else {
        Err(ItsmError::Rejected {
            status: 0,
            message: format!("{itsm} answered with a record id that is not one: {id:?}"),
        })
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
