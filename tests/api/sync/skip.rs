//! Alerts Azure can never be told about are skipped with their reason, over
//! real HTTP: the round closes the others, moves its watermark past them,
//! and never asks again; a refusal that names the request (not the alert)
//! holds instead.

use itsm_bridge::domain::correlation::AzureMark;
use itsm_bridge::domain::sync::ActionOutcome;
use itsm_bridge::inbound::sync::round;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::world;
use crate::fakes::Vendor;
use crate::helpers::*;

/// Requests the fake Azure's server received for paths containing `part`.
async fn arm_requests(w: &super::World, part: &str) -> usize {
    w.azure_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains(part))
        .count()
}

#[tokio::test]
async fn an_activity_log_alerts_incident_is_skipped_and_the_watermark_moves_past_it() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 2).await;
    // Azure's test notification of an activity log alert carries the rule's
    // id (`…/microsoft.insights/activityLogAlerts/Test_Alert`), which
    // Alerts Management does not take.
    let activity = fixture("test-activity-log-administrative-fired.json");
    assert_eq!(w.t.post(&activity).await.outcome(), "created");
    let activity_id = alert_id(&activity);
    assert!(activity_id.contains("/activityLogAlerts/"), "{activity_id}");
    w.person(2, "6");
    w.person(0, "6");
    w.person(1, "7");
    let report = w.round().await;
    let mut closed: Vec<String> = w.azure.changes().into_iter().map(|c| c.alert_id).collect();
    closed.sort();
    assert_eq!(closed, w.alerts, "{report:?}");
    let skipped: Vec<_> = report
        .actions
        .iter()
        .filter(|a| a.outcome == ActionOutcome::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1, "{report:?}");
    assert_eq!(skipped[0].alert_id, activity_id);
    assert_eq!(skipped[0].incident, w.number(2));
    let reason = skipped[0].detail.clone().unwrap();
    assert!(
        reason.contains("Alerts Management does not take") && reason.contains(&activity_id),
        "{reason}"
    );
    assert_eq!(arm_requests(&w, "activityLogAlerts").await, 0, "never sent");
    let record = w.t.record(&activity_id).await.unwrap();
    assert_eq!(record.azure.sent, Some(AzureMark::Skipped));
    assert_eq!(report.held_by, None, "nothing holds the watermark");
    assert!(!report.held_too_long);
    // The next round re-reads the overlap: nothing more, for anyone.
    let summary: Value = round(&w.t.app).await.unwrap();
    assert_eq!(
        (&summary["skipped"], &summary["sent"], &summary["held_by"]),
        (&json!(0), &json!(0), &Value::Null),
        "{summary}"
    );
    assert_eq!(w.azure.changes().len(), 2);
}

#[tokio::test]
async fn azures_conflict_for_one_alert_is_skipped_and_the_others_close() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 2).await;
    w.person(0, "6");
    w.t.advance(1);
    w.person(1, "6");
    w.azure
        .fail_next(ResponseTemplate::new(409).set_body_json(json!({"error": {
        "code": "Conflict", "message": "The alert cannot change its state now."}})));
    let report = w.round().await;
    let outcomes: Vec<ActionOutcome> = report.actions.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes.len(), 2, "{report:?}");
    assert!(outcomes.contains(&ActionOutcome::Skipped) && outcomes.contains(&ActionOutcome::Sent));
    let skipped = report
        .actions
        .iter()
        .find(|a| a.outcome == ActionOutcome::Skipped)
        .unwrap();
    assert!(
        skipped
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("HTTP 409") && d.contains("Conflict")),
        "{skipped:?}"
    );
    let record = w.t.record(&skipped.alert_id).await.unwrap();
    assert_eq!(record.azure.sent, Some(AzureMark::Skipped));
    assert_eq!(report.held_by, None);
    let again = w.round().await;
    assert!(again.actions.is_empty(), "{again:?}");
    assert_eq!(
        w.azure.changes().len(),
        1,
        "the refused alert is not asked again"
    );
}

#[tokio::test]
async fn an_api_version_resource_manager_refuses_holds_every_alert_and_names_the_fix() {
    let spawn = Spawn::default().var("AZURE_ALERTS_API_VERSION", "2019-05-05-previw");
    let w = world(spawn, Vendor::ServiceNow, 2).await;
    w.person(0, "6");
    w.person(1, "6");
    let report = w.round().await;
    assert_eq!(report.count(ActionOutcome::Denied), 2, "{report:?}");
    assert_eq!(report.count(ActionOutcome::Skipped), 0);
    let held = report.held_by.unwrap();
    assert!(
        held.reason.contains("AZURE_ALERTS_API_VERSION")
            && held.reason.contains("InvalidApiVersionParameter"),
        "{}",
        held.reason
    );
    for id in &w.alerts {
        assert_eq!(w.t.record(id).await.unwrap().azure.sent, None);
    }
    assert_eq!(
        arm_requests(&w, "/changestate").await,
        1,
        "one call, then the round stops"
    );
}

#[tokio::test]
async fn replay_sync_shows_a_budget_alerts_skip_with_its_reason() {
    use crate::fake_azure::FakeAzure;
    use crate::fakes::Fake;
    let (servicenow, fake) = Fake::serve(Vendor::ServiceNow).await;
    let (azure_server, azure) = FakeAzure::serve().await;
    let state = tempfile::tempdir().unwrap();
    let mut env: Vec<(&'static str, String)> = vec![
        ("SERVICENOW_INSTANCE_URL", servicenow.uri()),
        ("SERVICENOW_USERNAME", SN_USER.into()),
        ("SERVICENOW_PASSWORD", SN_PASSWORD.into()),
    ];
    let run =
        |extra: Vec<&'static str>, files: Vec<&'static str>, env: &[(&'static str, String)]| {
            let state = state.path().to_path_buf();
            let env: Vec<(&'static str, String)> = env.to_vec();
            tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut args = vec!["--itsm", "servicenow"];
                args.extend(extra);
                crate::replay::replay(&state, &args, &files, &env)
            })
        };
    let files = vec!["budget-fired.json", "metric-static-fired.json"];
    let (code, lines) = run(vec!["--send"], files, &env).await.unwrap();
    assert_eq!(code, 0, "{lines:?}");
    for i in fake.incidents() {
        fake.person(i["number"].as_str().unwrap(), "6", "jane.doe", now() - 120);
    }
    let outcomes = |lines: &[Value]| -> Vec<String> {
        let mut o: Vec<String> = lines
            .iter()
            .filter_map(|l| Some(l["outcome"].as_str()?.to_string()))
            .collect();
        o.sort();
        o
    };
    // Dry run: the skip and its reason beside the request it would send.
    let (code, lines) = run(vec!["--sync"], vec![], &env).await.unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(outcomes(&lines), ["skipped", "would_send"], "{lines:?}");
    let skip = lines.iter().find(|l| l["outcome"] == "skipped").unwrap();
    assert!(
        skip["alert_id"]
            .as_str()
            .unwrap()
            .contains("/Microsoft.CostManagement/alerts/"),
        "{skip}"
    );
    assert!(
        skip["detail"]
            .as_str()
            .unwrap()
            .contains("Alerts Management does not take"),
        "{skip}"
    );
    assert!(
        skip.get("azure_request").is_none(),
        "nothing would be sent: {skip}"
    );
    // --send: recorded as skipped, the other alert closed; then nothing.
    env.extend(FakeAzure::vars(&azure_server));
    let (code, lines) = run(vec!["--sync", "--send"], vec![], &env).await.unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(outcomes(&lines), ["sent", "skipped"], "{lines:?}");
    assert_eq!(azure.changes().len(), 1);
    let (code, lines) = run(vec!["--sync", "--send"], vec![], &env).await.unwrap();
    assert_eq!(outcomes(&lines), Vec::<String>::new(), "{lines:?}");
    // Nothing to do: the round's summary alone, nothing sent.
    assert_eq!(
        (code, &lines[0]["sync"]["sent"]),
        (0, &json!(0)),
        "{lines:?}"
    );
}
