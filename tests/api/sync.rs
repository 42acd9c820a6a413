//! The sync role over real HTTP: the webhook opens incidents in a fake
//! ServiceNow or BMC Helix, a person resolves some, and a round closes the
//! Azure alerts through a loopback Entra token endpoint and Alerts
//! Management API (`fake_azure`).

use std::time::Duration;

use itsm_bridge::domain::correlation::AzureMark;
use itsm_bridge::domain::sync::{ActionOutcome, RoundReport};
use itsm_bridge::inbound::sync::round;
use serde_json::Value;
use wiremock::{MockServer, ResponseTemplate};

use crate::fake_azure::{API_VERSION, FakeAzure};
use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

mod credentials;
mod feeds;
mod skip;

struct World {
    t: TestApp,
    itsm: Fake,
    azure: FakeAzure,
    azure_server: MockServer,
    alerts: Vec<String>,
}

/// `alerts` alerts fired through the webhook, each with its incident.
async fn world(spawn: Spawn, vendor: Vendor, alerts: usize) -> World {
    let (azure_server, azure) = FakeAzure::serve().await;
    let mut spawn = spawn;
    spawn.vars.extend(FakeAzure::vars(&azure_server));
    let t = spawn.start().await;
    let itsm = Fake::new(vendor);
    itsm.mount(&t.itsm).await;
    let mut ids = Vec::new();
    for n in 0..alerts {
        let body = metric_alert(&format!("sync-{n:04}"), "Fired");
        let reply = t.post(&body).await;
        assert_eq!(reply.outcome(), "created", "{}", reply.message());
        ids.push(alert_id(&body));
    }
    World {
        t,
        itsm,
        azure,
        azure_server,
        alerts: ids,
    }
}

impl World {
    fn number(&self, n: usize) -> String {
        let i = &self.itsm.incidents()[n];
        i["number"]
            .as_str()
            .or(i["values"]["Incident Number"].as_str())
            .or(i["key"].as_str())
            .unwrap()
            .to_string()
    }

    /// A person sets incident `n` to `status`, a few seconds ago.
    fn person(&self, n: usize, status: &str) {
        self.itsm
            .person(&self.number(n), status, "jane.doe", now() - 5);
    }

    async fn round(&self) -> RoundReport {
        self.t
            .app
            .sync
            .as_ref()
            .expect("sync configured")
            .round()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_person_resolving_one_of_three_incidents_closes_exactly_that_alert() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 3).await;
    w.person(1, "6");
    let report = w.round().await;
    let changes = w.azure.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].alert_id, w.alerts[1]);
    assert_eq!(changes[0].new_state, "Closed");
    let number = w.number(1);
    assert!(
        changes[0].comments.contains(&number) && changes[0].comments.contains("jane.doe"),
        "{}",
        changes[0].comments
    );
    assert_eq!(report.count(ActionOutcome::Sent), 1);
    let record = w.t.record(&w.alerts[1]).await.unwrap();
    assert_eq!(record.azure.sent, Some(AzureMark::Closed));
    // The next round re-reads its overlap and sends nothing.
    let again = w.round().await;
    assert!(again.examined >= 1);
    assert_eq!(w.azure.changes().len(), 1);
    assert_eq!(w.azure.token_requests(), 1, "the token is cached");
}

#[tokio::test]
async fn the_bridges_own_resolve_never_comes_back_to_azure() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 2).await;
    let resolved = metric_alert("sync-0000", "Resolved");
    assert_eq!(w.t.post(&resolved).await.outcome(), "resolved");
    assert_eq!(w.itsm.incidents()[0]["state"], "6");
    w.t.advance(5);
    let report = w.round().await;
    assert!(w.azure.changes().is_empty(), "{report:?}");
    assert_eq!(w.azure.token_requests(), 0, "no Azure call at all");
}

#[tokio::test]
async fn a_missing_role_is_named_and_retried_next_round() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 1).await;
    w.person(0, "7");
    w.azure.fail_next(
        ResponseTemplate::new(403).set_body_json(serde_json::json!({"error": {
            "code": "AuthorizationFailed",
            "message": "The client does not have authorization to perform action \
                'Microsoft.AlertsManagement/alerts/changestate/action'"}})),
    );
    let first = w.round().await;
    assert_eq!(first.count(ActionOutcome::Denied), 1);
    let detail = first.actions[0].detail.clone().unwrap();
    assert!(
        detail.contains("AuthorizationFailed") && detail.contains("Monitoring Contributor"),
        "{detail}"
    );
    assert!(w.azure.changes().is_empty());
    let second = w.round().await;
    assert_eq!(second.count(ActionOutcome::Sent), 1, "{second:?}");
    assert_eq!(w.azure.changes().len(), 1);
}

#[tokio::test]
async fn an_alert_azure_no_longer_has_is_recorded_and_left() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 1).await;
    w.azure.gone(&w.alerts[0]);
    w.person(0, "6");
    let report = w.round().await;
    assert_eq!(report.count(ActionOutcome::Gone), 1);
    let record = w.t.record(&w.alerts[0]).await.unwrap();
    assert_eq!(record.azure.sent, Some(AzureMark::Gone));
    let again = w.round().await;
    assert_eq!(again.count(ActionOutcome::Gone), 0, "never retried");
}

#[tokio::test]
async fn a_lost_answer_is_checked_not_repeated() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 1).await;
    w.person(0, "6");
    // Azure applies the change; its answer comes after our timeout.
    w.azure.answer_next_late(Duration::from_secs(2));
    let first = w.round().await;
    assert_eq!(first.count(ActionOutcome::Deferred), 1, "{first:?}");
    assert_eq!(w.azure.state_of(&w.alerts[0]).as_deref(), Some("Closed"));
    let second = w.round().await;
    assert_eq!(second.count(ActionOutcome::AlreadySet), 1, "{second:?}");
    assert_eq!(w.azure.reads(), 1);
    assert_eq!(w.azure.changes().len(), 1, "one change-state call in all");
}

#[tokio::test]
async fn pages_of_changes_are_all_followed() {
    let spawn = Spawn::default().var("SYNC_PAGE_SIZE", "7");
    let w = world(spawn, Vendor::ServiceNow, 23).await;
    for n in 0..23 {
        w.person(n, if n % 2 == 0 { "6" } else { "8" });
    }
    let report = w.round().await;
    assert_eq!(report.count(ActionOutcome::Sent), 23, "{report:?}");
    let mut ids: Vec<String> = w.azure.changes().into_iter().map(|c| c.alert_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 23, "every alert once");
    let pages =
        w.t.itsm
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.query().is_some_and(|q| q.contains("STARTSWITH")))
            .count();
    assert!(pages >= 4, "23 changes in pages of 7: {pages} queries");
}

#[tokio::test]
async fn throttled_rounds_wait_for_retry_after() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 2).await;
    w.person(0, "6");
    w.person(1, "6");
    w.azure.fail_next(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "120")
            .set_body_json(
                serde_json::json!({"error": {"code": "TooManyRequests", "message": "slow down"}}),
            ),
    );
    let first = w.round().await;
    assert_eq!(first.count(ActionOutcome::Deferred), 2);
    let paused = w.round().await;
    assert!(paused.paused_until.is_some_and(|t| t >= now() + 100));
    assert!(w.azure.changes().is_empty());
    w.t.advance(121);
    w.round().await;
    assert_eq!(w.azure.changes().len(), 2);
}

#[tokio::test]
async fn in_progress_acknowledges_when_configured() {
    let spawn = Spawn::default().var("SYNC_ACKNOWLEDGE", "true");
    let w = world(spawn, Vendor::ServiceNow, 1).await;
    w.person(0, "2");
    w.round().await;
    assert_eq!(w.azure.changes()[0].new_state, "Acknowledged");
}

#[tokio::test]
async fn an_itsm_outage_fails_the_round_and_moves_nothing() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 1).await;
    w.person(0, "6");
    w.itsm.set_down(true);
    let failed = round(&w.t.app).await;
    assert!(failed.is_err());
    w.itsm.set_down(false);
    let summary: Value = round(&w.t.app).await.unwrap();
    assert_eq!(summary["sent"], 1, "{summary}");
}

#[tokio::test]
async fn bmc_helix_incidents_close_their_alerts() {
    let w = world(Spawn::default().bmc(), Vendor::Bmc, 3).await;
    w.person(2, "Closed");
    w.person(0, "In Progress");
    let report = w.round().await;
    let changes = w.azure.changes();
    assert_eq!(changes.len(), 1, "{report:?}");
    assert_eq!(changes[0].alert_id, w.alerts[2]);
    assert!(changes[0].comments.contains("BMC Helix"));
}

#[tokio::test]
async fn jira_issues_close_their_alerts() {
    let w = world(Spawn::default().jira(), Vendor::Jira, 3).await;
    w.person(1, "Resolved");
    w.person(2, "In Progress");
    let report = w.round().await;
    let changes = w.azure.changes();
    assert_eq!(changes.len(), 1, "{report:?}");
    assert_eq!(changes[0].alert_id, w.alerts[1]);
    assert!(
        changes[0]
            .comments
            .contains("Jira issue OPS-2 set to Resolved"),
        "{}",
        changes[0].comments
    );
    w.round().await;
    assert_eq!(w.azure.changes().len(), 1);
}

#[tokio::test]
async fn jira_data_center_pages_are_all_followed() {
    let spawn = Spawn::default()
        .var("ITSM_KIND", "jira")
        .var("JIRA_PROJECT", "OPS")
        .var("JIRA_PAT", JIRA_PAT)
        .var("SYNC_PAGE_SIZE", "2");
    let w = world(spawn, Vendor::Jira, 5).await;
    for n in 0..5 {
        w.person(n, "Resolved");
    }
    let report = w.round().await;
    assert_eq!(report.count(ActionOutcome::Sent), 5, "{report:?}");
    let searches =
        w.t.itsm
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/rest/api/2/search")
            .count();
    assert!(searches >= 3, "5 in pages of 2: {searches} searches");
}

#[tokio::test]
async fn dynamodb_finds_records_through_its_index() {
    let w = world(Spawn::default().dynamodb(), Vendor::ServiceNow, 3).await;
    w.person(0, "6");
    let report = w.round().await;
    assert_eq!(report.count(ActionOutcome::Sent), 1, "{report:?}");
    assert_eq!(w.azure.changes()[0].alert_id, w.alerts[0]);
    w.round().await;
    assert_eq!(w.azure.changes().len(), 1, "the watermark and record hold");
}

#[tokio::test]
async fn overlapping_rounds_close_each_alert_once() {
    let w = world(Spawn::default(), Vendor::ServiceNow, 6).await;
    for n in 0..6 {
        w.person(n, "6");
    }
    let sync = w.t.app.sync.as_ref().unwrap();
    let (a, b) = tokio::join!(sync.round(), sync.round());
    a.unwrap();
    b.unwrap();
    w.round().await;
    assert_eq!(w.azure.changes().len(), 6);
}

#[tokio::test]
async fn the_role_is_off_unless_configured() {
    let t = Spawn::default().start().await;
    assert!(t.app.sync.is_none());
    let lookup = |k: &str| match k {
        "ENTRA_TENANT_ID" => Some(TENANT.to_string()),
        "ENTRA_AUDIENCES" => Some(AUDIENCE.to_string()),
        "ITSM_KIND" => Some("dry-run".into()),
        "AZURE_CLIENT_ID" => Some(crate::fake_azure::AZ_CLIENT_ID.into()),
        "AZURE_TENANT_ID" => Some(TENANT.into()),
        _ => None,
    };
    let err = itsm_bridge::config::Config::from_env(&itsm_bridge::config::Env::new(&lookup))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AZURE_CLIENT_SECRET"), "{err}");
    assert_eq!(
        API_VERSION,
        itsm_bridge::adapters::azure::DEFAULT_API_VERSION
    );
}
