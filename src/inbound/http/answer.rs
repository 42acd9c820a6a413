//! The one place where failures become HTTP answers, shaped for Azure's
//! retry rules: it retries 408, 429, 503, 504 and timeouts, never 500, 502
//! or other 4xx. So whatever may succeed later is a 503; what the sender
//! must fix is a 4xx saying what; nothing is ever a 500.

use serde_json::json;

use crate::domain::correlation::IncidentRef;
use crate::domain::delivery::QueueReason;
use crate::domain::outcome::{Outcome, ProcessError, Processed};
use crate::domain::ports::{AuthError, ItsmError, StoreError};
use crate::inbound::common_schema::SchemaError;

#[derive(Debug)]
pub enum Failure {
    Method(String),
    Path(String),
    ContentType(String),
    TooLarge(usize),
    Auth(AuthError),
    Schema(SchemaError),
    Process(ProcessError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body, already serialised.
    pub body: String,
}

/// Seconds Azure (or anyone) should wait before retrying a 503.
const RETRY_AFTER: &str = "5";

impl Failure {
    pub fn status(&self) -> u16 {
        match self {
            Failure::Method(_) => 405,
            Failure::Path(_) => 404,
            Failure::ContentType(_) => 415,
            Failure::TooLarge(_) => 413,
            Failure::Auth(AuthError::MissingCredentials | AuthError::Unauthenticated(_)) => 401,
            Failure::Auth(AuthError::Forbidden(_)) => 403,
            Failure::Auth(AuthError::KeysUnavailable(_)) => 503,
            Failure::Schema(_) => 400,
            Failure::Process(ProcessError::InProgress) => 503,
            // Nothing durable holds the notification: Azure must retry.
            Failure::Process(ProcessError::Queue(_)) => 503,
            Failure::Process(ProcessError::Behind(_)) => 503,
            Failure::Process(ProcessError::Store(_)) => 503,
            Failure::Process(ProcessError::Itsm(
                ItsmError::Unavailable(_) | ItsmError::Unanswered(_) | ItsmError::Busy(_),
            )) => 503,
            Failure::Process(ProcessError::Itsm(ItsmError::Throttled { .. })) => 503,
            // The ITSM refused; retrying will not help until the
            // configuration changes, so tell Azure not to retry.
            Failure::Process(ProcessError::Itsm(ItsmError::Rejected { .. })) => 502,
        }
    }

    /// A short machine-readable reason, also used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Method(_) => "method_not_allowed",
            Failure::Path(_) => "not_found",
            Failure::ContentType(_) => "unsupported_media_type",
            Failure::TooLarge(_) => "body_too_large",
            Failure::Auth(AuthError::MissingCredentials | AuthError::Unauthenticated(_)) => {
                "unauthenticated"
            }
            Failure::Auth(AuthError::Forbidden(_)) => "forbidden",
            Failure::Auth(AuthError::KeysUnavailable(_)) => "signing_keys_unavailable",
            Failure::Schema(_) => "invalid_alert",
            Failure::Process(ProcessError::InProgress) => "in_progress",
            Failure::Process(ProcessError::Queue(_)) => "queue_unavailable",
            Failure::Process(ProcessError::Behind(_)) => "queued_behind",
            Failure::Process(ProcessError::Store(StoreError::Conflict(_))) => "store_conflict",
            Failure::Process(ProcessError::Store(StoreError::Unavailable(_))) => {
                "store_unavailable"
            }
            Failure::Process(ProcessError::Itsm(
                ItsmError::Unavailable(_) | ItsmError::Unanswered(_),
            )) => "itsm_unavailable",
            Failure::Process(ProcessError::Itsm(ItsmError::Busy(_))) => "busy",
            Failure::Process(ProcessError::Itsm(ItsmError::Throttled { .. })) => "itsm_throttled",
            Failure::Process(ProcessError::Itsm(ItsmError::Rejected { .. })) => "itsm_rejected",
        }
    }

    /// For metrics: the ITSM's HTTP status when the ITSM failed.
    pub fn itsm_status(&self) -> Option<String> {
        match self {
            Failure::Process(ProcessError::Itsm(ItsmError::Rejected { status, .. })) => {
                Some(status.to_string())
            }
            Failure::Process(ProcessError::Itsm(ItsmError::Throttled { .. })) => Some("429".into()),
            Failure::Process(ProcessError::Itsm(
                ItsmError::Unavailable(_) | ItsmError::Unanswered(_),
            )) => Some("unavailable".into()),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Method(m) => format!("method {m} is not allowed; Azure Monitor sends POST"),
            Failure::Path(p) => format!(
                "nothing at {p}; point the action group at the function URL itself (or set WEBHOOK_PATH)"
            ),
            Failure::ContentType(t) => {
                format!("content type {t} is not JSON; Azure Monitor sends application/json")
            }
            Failure::TooLarge(n) => {
                format!("the body is {n} bytes; a common-schema alert is at most 256 KB")
            }
            Failure::Auth(e) => e.to_string(),
            Failure::Schema(e) => e.to_string(),
            Failure::Process(e) => e.to_string(),
        }
    }

    pub fn answer(&self) -> Answer {
        let status = self.status();
        let message = self.message();
        let mut headers = vec![];
        match (self, status) {
            (Failure::Method(_), _) => headers.push(("allow", "POST".to_string())),
            // RFC 6750: a request without credentials gets no error code.
            (Failure::Auth(AuthError::MissingCredentials), _) => {
                headers.push(("www-authenticate", "Bearer".to_string()));
            }
            (Failure::Auth(AuthError::Unauthenticated(why)), _) => headers.push((
                "www-authenticate",
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    why.replace('"', "'")
                ),
            )),
            (_, 503) => headers.push(("retry-after", RETRY_AFTER.to_string())),
            _ => {}
        }
        Answer {
            status,
            headers,
            body: json!({"error": self.reason(), "message": message}).to_string(),
        }
    }
}

/// 202: the notification is durably queued; Azure must not retry. The
/// answer names the ITSM's failure, when one queued it: its HTTP status
/// (when it answered) and message, and whether it refused (`refused`: a
/// 4xx, configuration to fix; retries alone will not deliver it).
pub fn queued(
    alert_id: &str,
    seq: u64,
    reason: QueueReason,
    failure: Option<&ItsmError>,
) -> Answer {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        outcome: &'static str,
        alert_id: &'a str,
        incident: Option<IncidentRef>,
        queue: Queue,
    }
    #[derive(serde::Serialize)]
    struct Queue {
        seq: u64,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<FailureBody>,
    }
    #[derive(serde::Serialize)]
    struct FailureBody {
        status: Option<u16>,
        message: String,
        refused: bool,
    }
    let failure = failure.map(|e| FailureBody {
        status: match e {
            ItsmError::Rejected { status, .. } if *status > 0 => Some(*status),
            ItsmError::Throttled { .. } => Some(429),
            _ => None,
        },
        message: e.to_string(),
        refused: !e.is_transient(),
    });
    let body = Body {
        outcome: "queued",
        alert_id,
        incident: None,
        queue: Queue {
            seq,
            reason: reason.as_str(),
            failure,
        },
    };
    Answer {
        status: 202,
        headers: vec![],
        body: serde_json::to_string(&body).expect("strings always serialise"),
    }
}

pub fn success(alert_id: &str, processed: &Processed) -> Answer {
    let status = if matches!(processed.outcome, Outcome::Created | Outcome::Recovered) {
        201
    } else {
        200
    };
    #[derive(serde::Serialize)]
    struct Body<'a> {
        outcome: &'static str,
        alert_id: &'a str,
        incident: &'a Option<IncidentRef>,
    }
    let body = Body {
        outcome: processed.outcome.as_str(),
        alert_id,
        incident: &processed.incident,
    };
    Answer {
        status,
        headers: vec![],
        body: serde_json::to_string(&body).expect("strings always serialise"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_azure_retry_rules() {
        let retryable = [
            Failure::Auth(AuthError::KeysUnavailable("x".into())),
            Failure::Process(ProcessError::InProgress),
            Failure::Process(ProcessError::Store(StoreError::Unavailable("x".into()))),
            Failure::Process(ProcessError::Itsm(ItsmError::Unavailable("x".into()))),
        ];
        for f in retryable {
            let a = f.answer();
            assert_eq!(a.status, 503, "{f:?}");
            assert!(a.headers.iter().any(|(h, _)| *h == "retry-after"));
        }
        let auth =
            Failure::Auth(AuthError::Unauthenticated("the token has expired".into())).answer();
        assert_eq!(auth.status, 401);
        assert!(auth.headers[0].1.contains("invalid_token"));
        assert_eq!(Failure::Schema(SchemaError::Missing("x")).status(), 400);
        let rejected = ItsmError::Rejected {
            status: 403,
            message: "m".into(),
        };
        assert_eq!(Failure::Process(ProcessError::Itsm(rejected)).status(), 502);
    }

    #[test]
    fn a_queued_answer_names_the_failure_and_whether_it_is_a_refusal() {
        let body = |failure: Option<&ItsmError>| -> serde_json::Value {
            let a = queued("a", 1, QueueReason::ItsmFailed, failure);
            assert_eq!(a.status, 202);
            serde_json::from_str(&a.body).unwrap()
        };
        let refused = ItsmError::Rejected {
            status: 403,
            message: "ACL Exception Insert Failed".into(),
        };
        let q = body(Some(&refused))["queue"].clone();
        assert_eq!(q["failure"]["status"], 403);
        assert_eq!(q["failure"]["refused"], true);
        assert!(
            q["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("ACL Exception Insert Failed"),
            "{q}"
        );
        let down = ItsmError::Unavailable("HTTP 503: hibernating".into());
        let q = body(Some(&down))["queue"].clone();
        assert_eq!(
            (&q["failure"]["status"], &q["failure"]["refused"]),
            (&serde_json::Value::Null, &serde_json::json!(false))
        );
        assert!(body(None)["queue"].get("failure").is_none());
    }
}
