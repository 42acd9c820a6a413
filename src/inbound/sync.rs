//! The scheduled role (`Handler: sync`): a schedule invokes it every
//! minute; each invocation runs one round and answers what it did:
//!
//! - with a delivery queue, the ITSM's breaker: the due probe, and the
//!   worker's event source mapping paused while the ITSM is down and
//!   resumed once it is back (`domain::delivery::breaker::round`); one log line when
//!   something changed, one EMF line (`Outcome` = `breaker`: `ItsmDown` 0
//!   or 1, `ItsmDownSecs`, `ItsmProbes`, `IntakePaused` 0 or 1);
//! - with a routing rule that groups alerts, the groups' batched updates,
//!   idleness and parents (`inbound::group_round`);
//! - with Azure configured, one round of `domain::sync`. A round that
//!   could not read the ITSM fails the invocation (the schedule's next one
//!   starts from the same watermark).
//!
//! Each round logs one line per alert it acted on, one line naming what
//! holds the watermark (an error once it is held longer than
//! `SYNC_MAX_HOLD_SECS`), and one EMF line (dimension `Outcome` = `sync`):
//! `SyncExamined`, `SyncClosed`, `SyncAcknowledged`, `SyncGone`,
//! `SyncSkipped`, `SyncDenied`, `SyncDeferred` (counts), `SyncWatermarkAge`
//! (seconds) and `SyncHeldTooLong` (0 or 1), for `SyncHeldAlarm`.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

use super::App;
use crate::domain::delivery::breaker::{ProbeOutcome, ProbeReport};
use crate::domain::sync::{ActionOutcome, RoundReport, SyncError};

/// Serves scheduled invocations with `app` until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    if app.sync.is_none() && app.delivery.is_none() && app.groups.is_none() {
        return Err(
            "Handler sync has nothing to do: set DELIVERY_QUEUE_URL (the ITSM's breaker and its \
             probe), a routing rule with a group (alert groups' updates), or AZURE_TENANT_ID, \
             AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_SECRET_ID) for the sync of alert \
             states"
                .into(),
        );
    }
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { round(&app).await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}

/// One round, logged and counted; the answer is its summary (the sync's,
/// with the breaker's under `breaker`).
///
/// # Errors
/// The sync round's [`SyncError`], logged.
pub async fn round(app: &App) -> Result<Value, SyncError> {
    let breaker = match &app.delivery {
        Some(delivery) => {
            let itsm = delivery.worker().itsm();
            let intake = app.intake.as_deref();
            let report = delivery.breaker().round(itsm.as_ref(), intake).await;
            if let Some(ns) = &app.metrics {
                println!("{}", breaker_metrics(ns, &report));
            }
            breaker_summary(&report)
        }
        None => Value::Null,
    };
    let groups = match &app.groups {
        Some(g) => super::group_round::round(g, app.metrics.as_deref()).await,
        None => Value::Null,
    };
    let Some(sync) = app.sync.as_ref() else {
        return Ok(json!({ "breaker": breaker, "groups": groups }));
    };
    let report = match sync.round().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "sync round failed; the next one starts from the same watermark");
            return Err(e);
        }
    };
    log(&report);
    if let Some(ns) = &app.metrics {
        println!("{}", metrics(ns, &report));
    }
    let mut answer = summary(&report);
    answer["breaker"] = breaker;
    answer["groups"] = groups;
    Ok(answer)
}

/// What the round did about the breaker, as its answer shows it.
pub fn breaker_summary(r: &ProbeReport) -> Value {
    let (outcome, detail) = match &r.outcome {
        ProbeOutcome::Up => ("up", Value::Null),
        ProbeOutcome::NotDue { until } => ("down", json!({ "next_probe": until })),
        ProbeOutcome::Recovered => ("recovered", Value::Null),
        ProbeOutcome::StillDown(why) => ("still_down", json!({ "reason": why })),
        ProbeOutcome::Unknown => ("unknown", Value::Null),
    };
    json!({"itsm": outcome, "detail": detail, "down_since": r.down_since,
        "intake_paused": r.intake_paused})
}

/// The breaker's EMF line: `ItsmDown` 1 while the ITSM is down (an alarm's
/// input), how long it has been, whether a probe was made, and whether
/// the worker's event source mapping is paused.
pub fn breaker_metrics(namespace: &str, r: &ProbeReport) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let down = !matches!(r.outcome, ProbeOutcome::Up | ProbeOutcome::Recovered);
    let probed = matches!(
        r.outcome,
        ProbeOutcome::Recovered | ProbeOutcome::StillDown(_)
    );
    let down_secs = if r.down_since > 0 {
        (now.as_secs() as i64 - r.down_since).max(0)
    } else {
        0
    };
    let values = [
        ("ItsmDown", i64::from(down), "Count"),
        ("ItsmDownSecs", down_secs, "Seconds"),
        ("ItsmProbes", i64::from(probed), "Count"),
        (
            "IntakePaused",
            i64::from(r.intake_paused == Some(true)),
            "Count",
        ),
    ];
    let mut doc = json!({"Outcome": "breaker"});
    for (name, value, _) in values {
        doc[name] = json!(value);
    }
    doc["_aws"] = json!({
        "Timestamp": now.as_millis() as u64,
        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Outcome"]],
            "Metrics": values.iter().map(|(n, _, unit)| json!({"Name": n, "Unit": unit}))
                .collect::<Vec<_>>()}],
    });
    doc
}

fn log(report: &RoundReport) {
    for a in &report.actions {
        match a.outcome {
            ActionOutcome::Deferred | ActionOutcome::Denied => tracing::warn!(
                alert_id = ?a.alert_id, incident = %a.incident, state = a.state,
                outcome = ?a.outcome, detail = ?a.detail, "alert state not changed; next round"
            ),
            // Logged once: the record remembers it, so no round acts again.
            ActionOutcome::Skipped => tracing::warn!(
                alert_id = ?a.alert_id, incident = %a.incident, state = a.state,
                outcome = ?a.outcome, reason = ?a.detail,
                "alert state cannot be changed in Azure; recorded as skipped, never retried"
            ),
            _ => tracing::info!(
                alert_id = ?a.alert_id, incident = %a.incident, state = a.state,
                outcome = ?a.outcome, "alert state synced"
            ),
        }
    }
    let Some(h) = &report.held_by else { return };
    let age = report.watermark_age_secs;
    if report.held_too_long {
        tracing::error!(
            watermark = h.at, age_secs = age, incident = ?h.incident, alert_id = ?h.alert_id,
            reason = %h.reason,
            "sync watermark held longer than SYNC_MAX_HOLD_SECS: later changes wait behind it"
        );
    } else {
        tracing::info!(
            watermark = h.at, age_secs = age, incident = ?h.incident, alert_id = ?h.alert_id,
            reason = %h.reason, "sync watermark held"
        );
    }
}

pub fn summary(report: &RoundReport) -> Value {
    json!({
        "examined": report.examined,
        "needing_nothing": report.needing_nothing,
        "sent": report.count(ActionOutcome::Sent),
        "already_set": report.count(ActionOutcome::AlreadySet),
        "gone": report.count(ActionOutcome::Gone),
        "skipped": report.count(ActionOutcome::Skipped),
        "denied": report.count(ActionOutcome::Denied),
        "deferred": report.count(ActionOutcome::Deferred),
        "watermark": report.watermark,
        "watermark_age_secs": report.watermark_age_secs,
        "held_by": report.held_by,
        "held_too_long": report.held_too_long,
        "paused_until": report.paused_until,
    })
}

/// The round's EMF line. `SyncDenied` above zero means Azure refuses every
/// change (role assignment, API version); `SyncHeldTooLong` 1 means the
/// watermark is older than `SYNC_MAX_HOLD_SECS`.
pub fn metrics(namespace: &str, report: &RoundReport) -> Value {
    use ActionOutcome as A;
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let sent = report.count(A::Sent) + report.count(A::AlreadySet);
    let closed = report
        .actions
        .iter()
        .filter(|a| a.state == "Closed" && matches!(a.outcome, A::Sent | A::AlreadySet))
        .count();
    let values = [
        ("SyncExamined", report.examined as i64, "Count"),
        ("SyncClosed", closed as i64, "Count"),
        ("SyncAcknowledged", (sent - closed) as i64, "Count"),
        ("SyncGone", report.count(A::Gone) as i64, "Count"),
        ("SyncSkipped", report.count(A::Skipped) as i64, "Count"),
        ("SyncDenied", report.count(A::Denied) as i64, "Count"),
        ("SyncDeferred", report.count(A::Deferred) as i64, "Count"),
        (
            "SyncWatermarkAge",
            report.watermark_age_secs.max(0),
            "Seconds",
        ),
        ("SyncHeldTooLong", i64::from(report.held_too_long), "Count"),
    ];
    let mut doc = json!({"Outcome": "sync"});
    for (name, value, _) in values {
        doc[name] = json!(value);
    }
    doc["_aws"] = json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Outcome"]],
            "Metrics": values.iter().map(|(n, _, unit)| json!({"Name": n, "Unit": unit}))
                .collect::<Vec<_>>()}],
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sync::{Action, Hold};

    #[test]
    fn a_round_is_one_valid_emf_line_with_skips_and_the_watermarks_age() {
        let action = |outcome| Action {
            alert_id: "/subscriptions/s/providers/Microsoft.CostManagement/alerts/b".into(),
            incident: "INC0000001".into(),
            state: "Closed",
            outcome,
            detail: None,
        };
        let report = RoundReport {
            examined: 4,
            actions: vec![
                action(ActionOutcome::Sent),
                action(ActionOutcome::Skipped),
                action(ActionOutcome::Deferred),
            ],
            watermark_age_secs: 7300,
            held_by: Some(Hold {
                at: 1,
                incident: Some("INC0000002".into()),
                alert_id: None,
                reason: "Azure unavailable: timed out".into(),
            }),
            held_too_long: true,
            ..RoundReport::default()
        };
        let doc = metrics("ItsmBridge", &report);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ItsmBridge");
        assert_eq!(doc["Outcome"], "sync");
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} missing: {doc}");
        }
        let unit = |name: &str| {
            directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["Name"] == name)
                .map(|m| m["Unit"].clone())
        };
        assert_eq!(unit("SyncWatermarkAge"), Some(json!("Seconds")));
        assert_eq!(
            (
                &doc["SyncClosed"],
                &doc["SyncSkipped"],
                &doc["SyncDeferred"]
            ),
            (&json!(1), &json!(1), &json!(1))
        );
        assert_eq!(
            (&doc["SyncWatermarkAge"], &doc["SyncHeldTooLong"]),
            (&json!(7300), &json!(1))
        );
        let s = summary(&report);
        assert_eq!(
            (&s["skipped"], &s["held_too_long"]),
            (&json!(1), &json!(true))
        );
        assert_eq!(s["held_by"]["incident"], "INC0000002");
    }
}
