//! The sync role (`Handler: sync`): a schedule invokes it every minute or
//! two; each invocation runs one round of `domain::sync` and answers what
//! it did. A round that could not read the ITSM fails the invocation (the
//! schedule's next one starts from the same watermark).

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};

use super::App;
use crate::domain::sync::{ActionOutcome, RoundReport, SyncError};

/// Serves scheduled invocations with `app` until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    if app.sync.is_none() {
        return Err(
            "Handler sync needs the sync role configured: set AZURE_TENANT_ID, \
             AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_SECRET_ID)"
                .into(),
        );
    }
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { round(&app).await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}

/// One round, logged and counted; the answer is its summary.
///
/// # Errors
/// The round's [`SyncError`], logged.
pub async fn round(app: &App) -> Result<Value, SyncError> {
    let sync = app.sync.as_ref().expect("checked at start");
    let report = match sync.round().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "sync round failed; the next one starts from the same watermark");
            return Err(e);
        }
    };
    for a in &report.actions {
        match a.outcome {
            ActionOutcome::Deferred | ActionOutcome::Denied => tracing::warn!(
                alert_id = ?a.alert_id, incident = %a.incident, state = a.state,
                outcome = ?a.outcome, detail = ?a.detail, "alert state not changed; next round"
            ),
            _ => tracing::info!(
                alert_id = ?a.alert_id, incident = %a.incident, state = a.state,
                outcome = ?a.outcome, "alert state synced"
            ),
        }
    }
    if let Some(ns) = &app.metrics {
        println!("{}", super::http::metrics::sync_round(ns, &report));
    }
    Ok(summary(&report))
}

pub fn summary(report: &RoundReport) -> Value {
    json!({
        "examined": report.examined,
        "skipped": report.skipped,
        "sent": report.count(ActionOutcome::Sent),
        "already_set": report.count(ActionOutcome::AlreadySet),
        "gone": report.count(ActionOutcome::Gone),
        "denied": report.count(ActionOutcome::Denied),
        "deferred": report.count(ActionOutcome::Deferred),
        "watermark": report.watermark,
        "paused_until": report.paused_until,
    })
}
