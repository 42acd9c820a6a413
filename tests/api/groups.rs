//! Alert grouping end to end (docs/GROUPING.md): the webhook over HTTP,
//! records and groups in DynamoDB (moto), the fake ServiceNow keeping
//! incidents and work notes, and the scheduled round.

use itsm_bridge::inbound::sync::round;
use serde_json::{Value, json};

use crate::fakes::{Fake, Vendor};
use crate::helpers::{Spawn, TestApp, metric_alert};

fn rules() -> String {
    json!({"rules": [{"name": "storage", "match": {"alert_rule": "test-metric*"},
        "set": {"assignment_group": "Storage"},
        "group": {"by": ["alert_rule", "resource_group"], "notes_every_secs": 60}}]})
    .to_string()
}

async fn spawn() -> (TestApp, Fake) {
    spawn_for(Vendor::ServiceNow).await
}

async fn spawn_for(vendor: Vendor) -> (TestApp, Fake) {
    let spawn = Spawn::default().dynamodb().var("ROUTING_RULES", &rules());
    let spawn = match vendor {
        Vendor::ServiceNow => spawn,
        Vendor::Bmc => spawn.bmc(),
        Vendor::Jira => spawn.jira(),
    };
    let app = spawn.start().await;
    let fake = Fake::new(vendor);
    fake.mount(&app.itsm).await;
    (app, fake)
}

/// The parent's journal as text: work notes, work log entries, comments.
fn updates(vendor: Vendor, parent: &Value) -> Vec<String> {
    let entries = match vendor {
        Vendor::Jira => &parent["comments"],
        _ => &parent["journal"],
    };
    let all = entries.as_array().cloned().unwrap_or_default();
    all.iter()
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
        .filter(|t| t.contains("group update"))
        .collect()
}

fn resolved(vendor: Vendor, parent: &Value) -> bool {
    match vendor {
        Vendor::ServiceNow => parent["state"] == "6",
        Vendor::Bmc => parent["values"]["Status"] == "Resolved",
        Vendor::Jira => parent["fields"]["status"]["statusCategory"]["key"] == "done",
    }
}

#[tokio::test]
async fn every_itsm_gets_one_parent_its_batched_update_in_its_journal_and_one_resolve() {
    for vendor in [Vendor::ServiceNow, Vendor::Bmc, Vendor::Jira] {
        let (app, fake) = spawn_for(vendor).await;
        for i in 0..6 {
            for _ in 0..2 {
                let reply = app.post(&metric_alert(&format!("v-{i}"), "Fired")).await;
                assert!(reply.status < 300, "{vendor:?}: {:?}", reply.body);
            }
        }
        assert_eq!(
            fake.incidents().len(),
            1,
            "{vendor:?}: {:?}",
            fake.incidents()
        );
        app.advance(61);
        round(&app.app).await.unwrap();
        let notes = updates(vendor, &fake.incidents()[0]);
        assert_eq!(notes.len(), 1, "{vendor:?}: {:?}", fake.incidents()[0]);
        assert!(
            notes[0].contains("6 alert(s), 6 open"),
            "{vendor:?}: {}",
            notes[0]
        );
        for i in 0..5 {
            app.post(&metric_alert(&format!("v-{i}"), "Resolved")).await;
        }
        assert!(!resolved(vendor, &fake.incidents()[0]), "{vendor:?}");
        app.post(&metric_alert("v-5", "Resolved")).await;
        assert!(
            resolved(vendor, &fake.incidents()[0]),
            "{vendor:?}: {:?}",
            fake.incidents()[0]
        );
    }
}

fn journal(fake: &Fake) -> Vec<String> {
    let incidents = fake.incidents();
    incidents[0]["journal"]
        .as_array()
        .map(|j| {
            j.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_storm_over_http_and_dynamodb_makes_one_parent_updated_in_one_note_and_resolved_once() {
    let (app, fake) = spawn().await;
    for i in 0..20 {
        let alert = metric_alert(&format!("group-{i}"), "Fired");
        for _ in 0..2 {
            let reply = app.post(&alert).await;
            assert!(
                reply.status == 201 || reply.status == 200,
                "{:?}",
                reply.body
            );
        }
    }
    let incidents = fake.incidents();
    assert_eq!(incidents.len(), 1, "one parent: {incidents:?}");
    assert_eq!(incidents[0]["state"], "1");
    // The round before notes_every_secs writes nothing; the one after, one note.
    round(&app.app).await.unwrap();
    assert!(journal(&fake).is_empty());
    app.advance(61);
    let answer = round(&app.app).await.unwrap();
    assert_eq!(answer["groups"]["updates_written"], 1, "{answer}");
    let notes = journal(&fake);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("20 alert(s), 20 open"), "{}", notes[0]);
    // Resolve all: only the last one resolves the parent; repeats change nothing.
    for i in 0..19 {
        app.post(&metric_alert(&format!("group-{i}"), "Resolved"))
            .await;
    }
    assert_eq!(fake.incidents()[0]["state"], "1");
    let last = metric_alert("group-19", "Resolved");
    assert_eq!(app.post(&last).await.status, 200);
    let parent = &fake.incidents()[0];
    assert_eq!(parent["state"], "6", "{parent}");
    let requests = app.itsm.received_requests().await.unwrap().len();
    app.post(&last).await;
    app.post(&metric_alert("group-3", "Resolved")).await;
    app.advance(61);
    round(&app.app).await.unwrap();
    assert_eq!(app.itsm.received_requests().await.unwrap().len(), requests);
}

#[tokio::test]
async fn a_storm_while_the_itsm_is_down_is_answered_2xx_and_ends_with_one_parent() {
    let (app, fake) = spawn().await;
    fake.set_down(true);
    for i in 0..5 {
        let reply = app.post(&metric_alert(&format!("down-{i}"), "Fired")).await;
        assert!(reply.status < 300, "{:?}", reply.body);
    }
    assert!(fake.incidents().is_empty());
    fake.set_down(false);
    app.advance(61);
    let answer = round(&app.app).await.unwrap();
    assert_eq!(answer["groups"]["parents_created"], 1, "{answer}");
    app.post(&metric_alert("down-5", "Fired")).await;
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn a_person_resolving_the_parent_closes_each_open_alert_in_azure_once_and_the_rest_stays_quiet()
 {
    use crate::fake_azure::FakeAzure;
    use crate::helpers::{alert_id, now};
    for (vendor, done) in [
        (Vendor::ServiceNow, "6"),
        (Vendor::Bmc, "Resolved"),
        (Vendor::Jira, "Resolved"),
    ] {
        let (azure_server, azure) = FakeAzure::serve().await;
        let mut spawn = Spawn::default().dynamodb().var("ROUTING_RULES", &rules());
        spawn.vars.extend(FakeAzure::vars(&azure_server));
        let app = match vendor {
            Vendor::ServiceNow => spawn,
            Vendor::Bmc => spawn.bmc(),
            Vendor::Jira => spawn.jira(),
        }
        .start()
        .await;
        let fake = Fake::new(vendor);
        fake.mount(&app.itsm).await;
        let alerts: Vec<Value> = (0..3)
            .map(|i| metric_alert(&format!("person-{i}"), "Fired"))
            .collect();
        for a in &alerts {
            assert!(app.post(a).await.status < 300, "{vendor:?}");
        }
        app.post(&metric_alert("person-0", "Resolved")).await;
        let parent = &fake.incidents()[0];
        let number = parent["number"]
            .as_str()
            .or(parent["values"]["Incident Number"].as_str())
            .or(parent["key"].as_str())
            .unwrap()
            .to_string();
        fake.person(&number, done, "jane.doe", now() - 5);
        let sync = app.app.sync.as_ref().expect("sync configured");
        let report = sync.round().await.unwrap();
        let mut closed: Vec<String> = azure.changes().iter().map(|c| c.alert_id.clone()).collect();
        closed.sort();
        let mut open = vec![alert_id(&alerts[1]), alert_id(&alerts[2])];
        open.sort();
        assert_eq!(
            closed, open,
            "{vendor:?}: the open children, once: {report:?}"
        );
        assert!(
            azure
                .changes()
                .iter()
                .all(|c| c.new_state == "Closed" && c.comments.contains(&number)),
            "{vendor:?}"
        );
        sync.round().await.unwrap();
        assert_eq!(azure.changes().len(), 2, "{vendor:?}: not again");
        // The group ended with the person's resolve: the children's
        // Resolved and the scheduled round make no ITSM call.
        let requests = app.itsm.received_requests().await.unwrap().len();
        app.post(&metric_alert("person-1", "Resolved")).await;
        app.post(&metric_alert("person-2", "Resolved")).await;
        app.advance(61);
        round(&app.app).await.unwrap();
        let after = app.itsm.received_requests().await.unwrap();
        let writes: Vec<String> = after[requests..]
            .iter()
            .filter(|r| r.method.as_str() != "GET")
            .map(|r| format!("{} {}", r.method, r.url.path()))
            .collect();
        assert!(writes.is_empty(), "{vendor:?}: {writes:?}");
    }
}

#[tokio::test]
async fn a_more_severe_child_raises_the_parents_priority_in_every_itsm() {
    for vendor in [Vendor::ServiceNow, Vendor::Bmc, Vendor::Jira] {
        let (app, fake) = spawn_for(vendor).await;
        app.post(&metric_alert("raise-0", "Fired")).await;
        let priority = |p: &Value| match vendor {
            Vendor::ServiceNow => format!("{}/{}", p["impact"], p["urgency"]),
            Vendor::Bmc => format!("{}/{}", p["values"]["Impact"], p["values"]["Urgency"]),
            Vendor::Jira => p["fields"]["priority"]["name"].to_string(),
        };
        let created = priority(&fake.incidents()[0]);
        let mut worse = metric_alert("raise-1", "Fired");
        worse["data"]["essentials"]["severity"] = json!("Sev0");
        assert!(app.post(&worse).await.status < 300, "{vendor:?}");
        app.advance(61);
        let answer = round(&app.app).await.unwrap();
        assert_eq!(
            answer["groups"]["priorities_raised"], 1,
            "{vendor:?}: {answer}"
        );
        let parent = &fake.incidents()[0];
        let expected = match vendor {
            Vendor::ServiceNow => "\"1\"/\"1\"",
            Vendor::Bmc => "\"1-Extensive/Widespread\"/\"1-Critical\"",
            Vendor::Jira => "\"Highest\"",
        };
        assert_eq!(
            priority(parent),
            expected,
            "{vendor:?}: created with {created}"
        );
        assert_ne!(created, expected, "{vendor:?}");
        assert!(
            updates(vendor, parent)[0].contains("Most severe alert now: Sev0"),
            "{vendor:?}: {parent}"
        );
    }
}
