//! Jira Service Management through the real handler, against the strict
//! fake Jira (`fake_jira.rs`): every sample event, exactly once under
//! concurrent duplicates, transitions by name, a person's own resolve, the
//! error envelope, and recovery after a create whose answer was lost.

use std::time::Duration;

use serde_json::Value;

use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

async fn spawn(spawn: Spawn) -> (TestApp, Fake) {
    let t = spawn.jira().start().await;
    let fake = Fake::new(Vendor::Jira);
    fake.mount(&t.itsm).await;
    (t, fake)
}

fn event_body(file: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
}

/// Every function URL event in `events/`, Fired before Resolved.
fn sample_events() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(format!("{}/events", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with("-fired.json") || n.ends_with("-resolved.json"))
            .collect();
    names.sort_by_key(|n| (n.ends_with("-resolved.json"), n.clone()));
    names
}

#[tokio::test]
async fn every_sample_opens_an_issue_jira_accepts_and_resolves_it() {
    let (t, fake) = spawn(Spawn::default()).await;
    let events = sample_events();
    assert!(events.len() >= 20);
    for file in &events {
        let reply = t.post(&event_body(file)).await;
        let expected = if file.ends_with("-fired.json") {
            "created"
        } else {
            "resolved"
        };
        assert_eq!(reply.outcome(), expected, "{file}: {}", reply.message());
    }
    let issues = fake.incidents();
    let fired = events.iter().filter(|f| f.ends_with("-fired.json")).count();
    assert_eq!(issues.len(), fired);
    for issue in &issues {
        let labels = issue["fields"]["labels"].as_array().unwrap();
        assert!(labels.iter().any(|l| l == "itsm-bridge"));
        assert!(
            labels
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("azmon-"))
        );
    }
    let resolved = issues
        .iter()
        .filter(|i| i["fields"]["status"]["name"] == "Resolved")
        .count();
    let pairs = events
        .iter()
        .filter(|f| f.ends_with("-resolved.json"))
        .count();
    assert_eq!(resolved, pairs);
    // The resolution went with the transition that needs it, and a comment.
    let done = issues
        .iter()
        .find(|i| i["fields"]["status"]["name"] == "Resolved")
        .unwrap();
    assert_eq!(done["fields"]["resolution"]["name"], "Done");
    assert_eq!(done["comments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_open_one_issue() {
    let (t, fake) = spawn(Spawn::default()).await;
    let body = metric_alert("jira-dup", "Fired");
    let replies = futures::future::join_all((0..12).map(|_| t.post(&body))).await;
    let created = replies.iter().filter(|r| r.outcome() == "created").count();
    assert_eq!(
        created,
        1,
        "{:?}",
        replies.iter().map(Reply::outcome).collect::<Vec<_>>()
    );
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn transitions_are_looked_up_once_per_status() {
    let (t, fake) = spawn(Spawn::default()).await;
    for n in 0..3 {
        t.post(&metric_alert(&format!("jira-tr-{n}"), "Fired"))
            .await;
    }
    for n in 0..3 {
        let reply = t
            .post(&metric_alert(&format!("jira-tr-{n}"), "Resolved"))
            .await;
        assert_eq!(reply.outcome(), "resolved");
    }
    let lookups = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path().ends_with("/transitions"))
        .count();
    assert_eq!(lookups, 1, "three resolves from Open, one lookup");
    assert_eq!(fake.incidents().len(), 3);
}

#[tokio::test]
async fn an_issue_a_person_resolved_is_left_alone() {
    let (t, fake) = spawn(Spawn::default()).await;
    t.post(&metric_alert("jira-person", "Fired")).await;
    fake.person("OPS-1", "Resolved", "jane", now());
    let reply = t.post(&metric_alert("jira-person", "Resolved")).await;
    assert_eq!(reply.outcome(), "closed_in_itsm");
    let transitions = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/transitions"))
        .count();
    assert_eq!(transitions, 0);
}

#[tokio::test]
async fn refusals_name_the_field_and_bad_settings_name_the_variable() {
    let (t, _fake) = spawn(Spawn::default().var("JIRA_PRIORITIES", "P1,P2,P3,P4,P5")).await;
    let reply = t.post(&metric_alert("jira-bad", "Fired")).await;
    assert_eq!(reply.status, 502, "{}", reply.message());
    assert!(
        reply.message().contains("field priority")
            && reply.message().contains("Priority name is not valid"),
        "{}",
        reply.message()
    );
    // A transition the workflow does not have: the names it does have.
    let (t, _fake) = spawn(Spawn::default().var("JIRA_RESOLVE_TRANSITION", "Finish")).await;
    t.post(&metric_alert("jira-tr", "Fired")).await;
    let reply = t.post(&metric_alert("jira-tr", "Resolved")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.message().contains("\"Finish\"") && reply.message().contains("Resolve"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn a_lost_create_answer_never_makes_a_second_issue() {
    let spawn_ = Spawn::default()
        .var("ITSM_TIMEOUT_MS", "300")
        .var("ITSM_DEADLINE_MS", "1500");
    let (t, fake) = spawn(spawn_).await;
    // Jira's search shows a new issue only after a while.
    fake.index_lag(Duration::from_secs(10));
    fake.answer_next_late(Duration::from_secs(2));
    let body = metric_alert("jira-lost", "Fired");
    let first = t.post(&body).await;
    assert_eq!(first.status, 503, "{}", first.message());
    assert!(first.message().contains("lag"), "{}", first.message());
    // Azure's retry, at once: the search may not show the issue yet, so
    // the bridge does not create another.
    let retry = t.post(&body).await;
    assert_ne!(retry.outcome(), "created", "{}", retry.message());
    assert_eq!(
        fake.incidents().len(),
        1,
        "one issue, whatever was answered"
    );
}

#[tokio::test]
async fn reopen_walks_the_reopen_transition_with_a_comment() {
    let (t, fake) = spawn(Spawn::default().var("REFIRE_POLICY", "reopen")).await;
    let mut fired = metric_alert("jira-re", "Fired");
    t.post(&fired).await;
    t.post(&metric_alert("jira-re", "Resolved")).await;
    fired["data"]["essentials"]["firedDateTime"] = serde_json::json!("2030-01-01T00:00:00Z");
    let reply = t.post(&fired).await;
    assert_eq!(reply.outcome(), "reopened", "{}", reply.message());
    let issue = &fake.incidents()[0];
    assert_eq!(issue["fields"]["status"]["name"], "Open");
    assert_eq!(issue["comments"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_data_center_pat_works_and_a_wrong_token_says_what_to_check() {
    let t = Spawn::default()
        .var("ITSM_KIND", "jira")
        .var("JIRA_PROJECT", "OPS")
        .var("JIRA_PAT", JIRA_PAT)
        .start()
        .await;
    let fake = Fake::new(Vendor::Jira);
    fake.mount(&t.itsm).await;
    assert_eq!(
        t.post(&metric_alert("jira-pat", "Fired")).await.outcome(),
        "created"
    );
    let t = Spawn::default()
        .var("ITSM_KIND", "jira")
        .var("JIRA_PROJECT", "OPS")
        .var("JIRA_PAT", "not-the-token")
        .start()
        .await;
    Fake::new(Vendor::Jira).mount(&t.itsm).await;
    let reply = t.post(&metric_alert("jira-pat", "Fired")).await;
    assert_eq!(reply.status, 502);
    assert!(reply.message().contains("JIRA_PAT"), "{}", reply.message());
    assert!(!reply.message().contains("not-the-token"));
}

#[tokio::test]
async fn microsofts_full_sample_payloads_open_issues_jira_accepts() {
    let (t, fake) = spawn(Spawn::default()).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure-samples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("test-") && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 10);
    for (n, name) in names.iter().enumerate() {
        let mut body: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap())
                .unwrap();
        // Each its own alert, fired, whatever the sample says.
        let e = &mut body["data"]["essentials"];
        e["alertId"] = serde_json::json!(format!(
            "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/sample-{n}"
        ));
        e["monitorCondition"] = serde_json::json!("Fired");
        let reply = t.post(&body).await;
        assert_eq!(reply.outcome(), "created", "{name}: {}", reply.message());
    }
    assert_eq!(fake.incidents().len(), names.len());
}
