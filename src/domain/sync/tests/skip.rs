//! Changes Azure can never be told are skipped, not held; what may work
//! later holds the watermark, and a round says what holds it and for how
//! long.

use super::*;

/// A budget alert's id as Azure sends it (`test-budget-fired.json`):
/// Cost Management's, which Alerts Management does not take.
const BUDGET: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.CostManagement/alerts/Test_Alert";

/// Alert ids closed in Azure, each once.
fn closed(w: &World) -> Vec<String> {
    let mut ids: Vec<String> = w.azure.calls().into_iter().map(|c| c.0).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an alert changed twice");
    ids
}

/// `metric` metric alerts' ids, with a budget alert's at `budget_at`.
fn ids_with_budget(metric: usize, budget_at: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..metric).map(alert_id).collect();
    ids.insert(budget_at, BUDGET.to_string());
    ids
}

#[tokio::test]
async fn a_budget_alerts_incident_is_skipped_with_its_reason_and_the_watermark_passes_it() {
    let w = World::with_ids(ids_with_budget(3, 1), 100).await;
    let sync = w.sync(SyncSettings::default());
    // The budget alert's incident changed first: it would hold the rest.
    for n in 0..4 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 400 - n as i64);
    }
    let report = sync.round().await.unwrap();
    assert_eq!(closed(&w), [alert_id(0), alert_id(1), alert_id(2)]);
    let skipped: Vec<&Action> = report
        .actions
        .iter()
        .filter(|a| a.outcome == ActionOutcome::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1, "{report:?}");
    assert_eq!(
        (skipped[0].alert_id.as_str(), skipped[0].incident.as_str()),
        (BUDGET, "INC0000001")
    );
    let reason = skipped[0].detail.as_deref().unwrap_or_default();
    assert!(
        reason.contains("Alerts Management does not take") && reason.contains("CostManagement"),
        "{reason}"
    );
    assert_eq!(w.record(1).await.azure.sent, Some(AzureMark::Skipped));
    assert_eq!(w.record(1).await.azure.lease_until, 0, "lease ended");
    let settled = NOW - SyncSettings::default().settle_secs;
    assert_eq!((report.watermark, &report.held_by), (settled, &None));
    // The overlap re-reads it; the record says Azure cannot be told.
    w.later(60);
    let again = sync.round().await.unwrap();
    assert_eq!(w.azure.asked_about(BUDGET), 1, "not asked again");
    assert!(again.actions.is_empty(), "{again:?}");
}

#[tokio::test]
async fn azures_refusal_for_good_is_skipped_but_a_missing_role_holds() {
    let w = World::new(3, 100).await;
    let sync = w.sync(SyncSettings::default());
    for n in 0..3 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 400 - n as i64);
    }
    let refusal = AzureError::Rejected {
        status: 409,
        message: "Conflict: the alert cannot change state".into(),
    };
    w.azure
        .fail_always
        .lock()
        .unwrap()
        .insert(alert_id(0), refusal);
    w.azure.fail_always.lock().unwrap().insert(
        alert_id(1),
        AzureError::Denied("403 AuthorizationFailed".into()),
    );
    let report = sync.round().await.unwrap();
    let outcomes: Vec<ActionOutcome> = report.actions.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            ActionOutcome::Skipped,
            ActionOutcome::Denied,
            ActionOutcome::Denied
        ]
    );
    assert!(report.actions[0].detail.as_ref().unwrap().contains("409"));
    assert_eq!(w.record(0).await.azure.sent, Some(AzureMark::Skipped));
    // The role is fixable and affects all: held at the first it stopped.
    let held = report.held_by.clone().unwrap();
    assert_eq!(report.watermark, NOW - 399);
    assert_eq!(held.incident.as_deref(), Some("INC0000001"));
    assert!(held.reason.contains("AuthorizationFailed"), "{held:?}");
}

#[tokio::test]
async fn a_backlog_past_the_page_limit_behind_a_budget_alert_is_closed_over_rounds() {
    // 4 changes a round (2 pages of 2); the budget alert's first of 12.
    let w = World::with_ids(ids_with_budget(11, 0), 2).await;
    let settings = SyncSettings {
        max_pages: 2,
        ..SyncSettings::default()
    };
    let sync = w.sync(settings);
    for n in 0..12 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 400 - n as i64);
    }
    for _ in 0..6 {
        sync.round().await.unwrap();
        w.later(120);
    }
    assert_eq!(closed(&w).len(), 11, "every metric alert closed");
    assert_eq!(w.azure.asked_about(BUDGET), 1);
    let report = sync.round().await.unwrap();
    assert_eq!(
        report.watermark,
        w.now() - SyncSettings::default().settle_secs
    );
}

#[tokio::test]
async fn a_backlog_denser_than_the_overlap_still_moves_each_round() {
    // 12 changes a second apart: all within one overlap of each other, so
    // a round that counted the re-read pages would read the same four.
    let w = World::new(12, 2).await;
    let settings = SyncSettings {
        max_pages: 2,
        ..SyncSettings::default()
    };
    let sync = w.sync(settings);
    for n in 0..12 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 400 - n as i64);
    }
    let first = sync.round().await.unwrap();
    assert_eq!(closed(&w).len(), 4);
    assert!(first.held_by.unwrap().reason.contains("SYNC_MAX_PAGES"));
    let mut before = first.watermark;
    for _ in 0..4 {
        w.later(60);
        let r = sync.round().await.unwrap();
        assert!(r.watermark > before, "the watermark moves: {r:?}");
        before = r.watermark;
        if closed(&w).len() == 12 {
            break;
        }
    }
    assert_eq!(closed(&w).len(), 12);
}

#[tokio::test]
async fn a_transient_failure_still_holds_and_says_which_change_and_why() {
    let w = World::new(3, 100).await;
    let sync = w.sync(SyncSettings::default());
    for n in 0..3 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 400 - n as i64);
    }
    let down = AzureError::Unavailable("Resource Manager answered HTTP 503".into());
    w.azure
        .fail_always
        .lock()
        .unwrap()
        .insert(alert_id(1), down);
    let report = sync.round().await.unwrap();
    assert_eq!(closed(&w), [alert_id(0), alert_id(2)]);
    assert_eq!(report.count(ActionOutcome::Deferred), 1);
    assert_eq!(report.watermark, NOW - 399, "held at incident 1's change");
    let held = report.held_by.unwrap();
    assert_eq!(
        (held.incident.as_deref(), held.alert_id.as_deref()),
        (Some("INC0000001"), Some(alert_id(1).as_str()))
    );
    assert!(held.reason.contains("HTTP 503"), "{}", held.reason);
    assert_eq!(w.record(1).await.azure.sent, None);
    // Azure recovers: the next round asks first, then closes it.
    w.azure.fail_always.lock().unwrap().clear();
    w.later(60);
    let next = sync.round().await.unwrap();
    assert_eq!(closed(&w).len(), 3);
    assert_eq!(next.held_by, None);
}

#[tokio::test]
async fn a_watermark_held_longer_than_the_limit_is_reported_until_it_moves() {
    let w = World::new(2, 100).await;
    let settings = SyncSettings {
        max_hold_secs: 1800,
        ..SyncSettings::default()
    };
    let sync = w.sync(settings);
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.azure
        .fail_always
        .lock()
        .unwrap()
        .insert(alert_id(0), AzureError::Unavailable("timed out".into()));
    let first = sync.round().await.unwrap();
    assert_eq!(first.watermark_age_secs, 300);
    assert!(!first.held_too_long);
    w.later(1600);
    let late = sync.round().await.unwrap();
    assert_eq!(late.watermark_age_secs, 1900);
    assert!(late.held_too_long, "{late:?}");
    assert_eq!(
        late.held_by.unwrap().incident.as_deref(),
        Some("INC0000000")
    );
    w.azure.fail_always.lock().unwrap().clear();
    w.later(60);
    let moved = sync.round().await.unwrap();
    assert!(!moved.held_too_long);
    assert_eq!(
        moved.watermark_age_secs,
        SyncSettings::default().settle_secs
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_skip_and_records_nothing() {
    let w = World::with_ids(ids_with_budget(1, 0), 100).await;
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.person(1, IncidentStatus::Closed, "Resolved");
    let dry = SyncSettings {
        dry_run: true,
        ..SyncSettings::default()
    };
    let report = w.sync(dry).round().await.unwrap();
    let outcomes: Vec<ActionOutcome> = report.actions.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [ActionOutcome::Skipped, ActionOutcome::WouldSend]);
    assert_eq!(report.held_by, None);
    assert_eq!(w.record(0).await.azure.sent, None);
}

#[tokio::test]
async fn a_round_out_of_time_keeps_what_it_did_and_never_moves_the_watermark_back() {
    let w = World::new(4, 100).await;
    let sync = w.sync(SyncSettings::default());
    let first = sync.round().await.unwrap();
    w.later(600);
    for n in 0..4 {
        w.person_ago(n, IncidentStatus::Closed, "Resolved", 300 - n as i64);
    }
    // Each change takes 60 ms: the budget runs out after one or two.
    *w.azure.slow.lock().unwrap() = Some(Duration::from_millis(60));
    let short = SyncSettings {
        budget: Duration::from_millis(100),
        ..SyncSettings::default()
    };
    let report = w.sync(short).round().await.unwrap();
    let done = w.azure.calls().len();
    assert!(done < 4, "{report:?}");
    let next = w.feed.incidents.lock().unwrap()[done].updated_at;
    assert_eq!(report.watermark, next, "at the first change not examined");
    assert!(report.watermark > first.watermark, "never back");
    assert!(
        report.held_by.unwrap().reason.contains("time budget"),
        "the reason is named"
    );
    *w.azure.slow.lock().unwrap() = None;
    w.later(60);
    sync.round().await.unwrap();
    assert_eq!(closed(&w).len(), 4);
}
