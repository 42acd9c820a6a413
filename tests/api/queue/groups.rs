//! A storm of grouped alerts during an ITSM outage with the delivery
//! queue (moto's SQS and DynamoDB, the worker driven as Lambda's event
//! source mapping does): every notification answered 2xx (a join needs
//! only the store: 201; a notification queued: 202), and after the return
//! one parent, one batched update naming every child once, and the parent
//! resolved once by its last child.

use itsm_bridge::inbound::sync::round;
use serde_json::json;

use super::{Esm, store_and_forward};
use crate::fakes::{Fake, Vendor};
use crate::helpers::{TestApp, metric_alert};

/// The webhook and worker over moto with `rules`, the fake ServiceNow.
async fn start(rules: &str) -> (TestApp, Fake) {
    let t = store_and_forward(50)
        // An attempt with child incidents makes up to 4 requests of 300 ms.
        .var("WORKER_DEADLINE_MS", "1500")
        .var("ROUTING_RULES", rules)
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    (t, fake)
}

/// `alerts` alerts fire while ServiceNow is down, every third twice: each
/// answered 2xx, nothing reaches ServiceNow; then it is back.
async fn fire_while_down(t: &TestApp, fake: &Fake, name: &str, alerts: usize) {
    fake.set_down(true);
    for i in 0..alerts {
        let fired = metric_alert(&format!("{name}-{i}"), "Fired");
        for _ in 0..(1 + usize::from(i % 3 == 0)) {
            let reply = t.post(&fired).await;
            assert!(matches!(reply.status, 200..=202), "{:?}", reply.body);
        }
    }
    assert!(fake.incidents().is_empty());
}

#[tokio::test]
async fn a_grouped_storm_through_an_outage_ends_with_one_parent_resolved_once() {
    let rules = json!({"rules": [{"name": "storm", "match": {"alert_rule": "test-metric*"},
        "set": {}, "group": {"by": ["alert_rule"], "notes_every_secs": 60}}]});
    let (t, fake) = start(&rules.to_string()).await;
    let alerts = 24;
    fire_while_down(&t, &fake, "storm", alerts).await;
    fake.set_down(false);
    Esm { t: &t }.drain().await;
    t.advance(61);
    round(&t.app).await.unwrap();
    let incidents = fake.incidents();
    assert_eq!(incidents.len(), 1, "one parent: {incidents:?}");
    let journal = fake.incidents()[0]["journal"].clone();
    let notes: Vec<&str> = journal
        .as_array()
        .map(|j| j.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(notes.len(), 1, "{journal}");
    assert!(
        notes[0].contains(&format!("{alerts} alert(s), {alerts} open")),
        "{}",
        notes[0]
    );
    assert_eq!(notes[0].matches("- joined: ").count(), alerts);
    for i in 0..alerts {
        let reply = t
            .post(&metric_alert(&format!("storm-{i}"), "Resolved"))
            .await;
        assert!(reply.status < 300, "{:?}", reply.body);
        let resolved = fake.incidents()[0]["state"] == "6";
        assert_eq!(resolved, i == alerts - 1, "after the Resolved of storm-{i}");
    }
}

/// `children: incidents` (ServiceNow): the rule, and what the fake keeps.
fn child_incident_rules() -> String {
    json!({"rules": [{"name": "storm", "match": {"alert_rule": "test-metric*"},
        "set": {}, "group": {"by": ["alert_rule"], "notes_every_secs": 60,
        "children": "incidents"}}]})
    .to_string()
}

/// The parent (the incident without `parent_incident`) and its children.
fn family(fake: &Fake) -> (serde_json::Value, Vec<serde_json::Value>) {
    let incidents = fake.incidents();
    let parents: Vec<_> = incidents
        .iter()
        .filter(|i| i.get("parent_incident").is_none())
        .cloned()
        .collect();
    assert_eq!(parents.len(), 1, "one parent: {incidents:?}");
    let children = incidents
        .iter()
        .filter(|i| i.get("parent_incident").is_some())
        .cloned()
        .collect();
    (parents[0].clone(), children)
}

/// Every child once, under the parent, by its alert's key.
fn assert_one_child_each(fake: &Fake, alerts: usize) -> serde_json::Value {
    let (parent, children) = family(fake);
    assert_eq!(children.len(), alerts, "{children:?}");
    let mut keys: Vec<&str> = children
        .iter()
        .map(|c| c["correlation_id"].as_str().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), alerts, "a child incident per alert, once");
    for c in &children {
        assert_eq!(c["parent_incident"], parent["sys_id"], "{c}");
    }
    parent
}

#[tokio::test]
async fn child_incidents_through_an_outage_one_each_under_one_parent_each_resolved_once() {
    let (t, fake) = start(&child_incident_rules()).await;
    let alerts = 12;
    fire_while_down(&t, &fake, "child", alerts).await;
    fake.set_down(false);
    Esm { t: &t }.drain().await;
    let parent = assert_one_child_each(&fake, alerts);
    assert_eq!(parent["state"], "1");
    // Each Resolved resolves its own child incident and counts it out; the
    // last also resolves the parent.
    for i in 0..alerts {
        let reply = t
            .post(&metric_alert(&format!("child-{i}"), "Resolved"))
            .await;
        assert!(reply.status < 300, "{:?}", reply.body);
        let (parent, children) = family(&fake);
        assert_eq!(parent["state"] == "6", i == alerts - 1, "after child-{i}");
        let resolved = children.iter().filter(|c| c["state"] == "6").count();
        assert_eq!(resolved, i + 1, "after child-{i}");
    }
    // Azure's repeats after the end: no ITSM call.
    let before = t.itsm.received_requests().await.unwrap().len();
    t.post(&metric_alert("child-0", "Resolved")).await;
    t.post(&metric_alert("child-0", "Fired")).await;
    t.advance(61);
    round(&t.app).await.unwrap();
    assert_eq!(t.itsm.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn concurrent_first_alerts_of_a_group_make_one_parent_and_one_child_incident_each() {
    let (t, fake) = start(&child_incident_rules()).await;
    let alerts = 8;
    // Every alert at once: one opens the group and makes the parent; the
    // others wait for it (inline, or queued: 202). Then Azure's repeats.
    let fired: Vec<_> = (0..alerts)
        .map(|i| metric_alert(&format!("rush-{i}"), "Fired"))
        .collect();
    let replies = futures::future::join_all(fired.iter().map(|a| t.post(a))).await;
    for r in &replies {
        assert!(matches!(r.status, 200..=202), "{:?}", r.body);
    }
    let replies = futures::future::join_all(fired.iter().map(|a| t.post(a))).await;
    for r in &replies {
        assert!(matches!(r.status, 200..=202), "{:?}", r.body);
    }
    Esm { t: &t }.drain().await;
    let parent = assert_one_child_each(&fake, alerts);
    // A person resolves the parent: ServiceNow's cascade resolves the
    // children whose alerts still fire.
    fake.person(parent["number"].as_str().unwrap(), "6", "jane.doe", 0);
    let (_, children) = family(&fake);
    assert!(children.iter().all(|c| c["state"] == "6"), "{children:?}");
}
