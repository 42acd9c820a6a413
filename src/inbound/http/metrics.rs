//! CloudWatch Embedded Metric Format: one JSON line per event on stdout,
//! which CloudWatch Logs turns into metrics without any API call.
//!
//! Metrics (namespace `METRICS_NAMESPACE`), all with the dimension
//! `Outcome` (an outcome such as `created`, or a failure reason such as
//! `unauthenticated` or `itsm_unavailable`): `Events`, `DuplicatesSuppressed`,
//! `AuthFailures`, `ItsmErrors`, and `ItsmLatency` (milliseconds spent in ITSM
//! calls, when there were any). ITSM failures also carry `ItsmStatus`. The
//! worker adds `Parked` for each notification it parks in the dead-letter queue;
//! the sync role's one line per round is in `inbound/sync.rs`.

use serde_json::{Value, json};

/// What one event did, as far as metrics care.
pub struct EventMetrics<'a> {
    pub outcome: &'a str,
    pub status: u16,
    pub itsm_ms: Option<u64>,
    /// The ITSM's HTTP status (or `unavailable`) when the ITSM failed.
    pub itsm_status: Option<String>,
    pub timestamp_ms: u64,
}

pub fn emf(namespace: &str, m: &EventMetrics) -> Value {
    let duplicate = matches!(m.outcome, "duplicate" | "stale_fired" | "already_resolved");
    let auth = matches!(m.status, 401 | 403) || m.outcome == "signing_keys_unavailable";
    let mut metrics = vec![
        json!({"Name": "Events", "Unit": "Count"}),
        json!({"Name": "DuplicatesSuppressed", "Unit": "Count"}),
        json!({"Name": "AuthFailures", "Unit": "Count"}),
        json!({"Name": "ItsmErrors", "Unit": "Count"}),
    ];
    let mut dimensions = vec![json!(["Outcome"])];
    let mut doc = json!({
        "Outcome": m.outcome,
        "Events": 1,
        "DuplicatesSuppressed": u8::from(duplicate),
        "AuthFailures": u8::from(auth),
        "ItsmErrors": u8::from(m.itsm_status.is_some()),
    });
    if let Some(ms) = m.itsm_ms {
        metrics.push(json!({"Name": "ItsmLatency", "Unit": "Milliseconds"}));
        doc["ItsmLatency"] = json!(ms);
    }
    if let Some(status) = &m.itsm_status {
        dimensions.push(json!(["ItsmStatus"]));
        doc["ItsmStatus"] = json!(status);
    }
    doc["_aws"] = json!({
        "Timestamp": m.timestamp_ms,
        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}],
    });
    doc
}

/// One notification parked in the dead-letter queue by the worker:
/// `Parked` (dimension `Outcome` = `parked`), for an alarm besides the queue's own.
pub fn parked(namespace: &str) -> Value {
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "Outcome": "parked",
        "Parked": 1,
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Outcome"]],
                "Metrics": [{"Name": "Parked", "Unit": "Count"}]}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape CloudWatch requires: every dimension and metric named in
    /// the directive is a top-level member of the document.
    fn valid_emf(doc: &Value) -> bool {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        doc["_aws"]["Timestamp"].is_u64()
            && directive["Namespace"].is_string()
            && directive["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|set| {
                    set.as_array()
                        .unwrap()
                        .iter()
                        .all(|d| doc[d.as_str().unwrap()].is_string())
                })
            && directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| doc[m["Name"].as_str().unwrap()].is_number())
    }

    #[test]
    fn events_become_valid_emf() {
        let created = emf(
            "ItsmBridge",
            &EventMetrics {
                outcome: "created",
                status: 201,
                itsm_ms: Some(42),
                itsm_status: None,
                timestamp_ms: 1,
            },
        );
        assert!(valid_emf(&created), "{created}");
        assert_eq!(
            (created["ItsmLatency"].as_u64(), created["Events"].as_u64()),
            (Some(42), Some(1))
        );
        let dup = emf(
            "ItsmBridge",
            &EventMetrics {
                outcome: "duplicate",
                status: 200,
                itsm_ms: None,
                itsm_status: None,
                timestamp_ms: 1,
            },
        );
        assert!(
            valid_emf(&dup) && dup["DuplicatesSuppressed"] == 1 && dup.get("ItsmLatency").is_none()
        );
        let denied = emf(
            "ItsmBridge",
            &EventMetrics {
                outcome: "forbidden",
                status: 403,
                itsm_ms: None,
                itsm_status: None,
                timestamp_ms: 1,
            },
        );
        assert_eq!(denied["AuthFailures"], 1);
        let down = emf(
            "ItsmBridge",
            &EventMetrics {
                outcome: "itsm_rejected",
                status: 502,
                itsm_ms: Some(5),
                itsm_status: Some("403".into()),
                timestamp_ms: 1,
            },
        );
        assert!(valid_emf(&down), "{down}");
        assert_eq!(
            (down["ItsmErrors"].as_u64(), down["ItsmStatus"].as_str()),
            (Some(1), Some("403"))
        );
    }
}
