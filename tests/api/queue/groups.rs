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
use crate::helpers::metric_alert;

#[tokio::test]
async fn a_grouped_storm_through_an_outage_ends_with_one_parent_resolved_once() {
    let rules = json!({"rules": [{"name": "storm", "match": {"alert_rule": "test-metric*"},
        "set": {}, "group": {"by": ["alert_rule"], "notes_every_secs": 60}}]});
    let t = store_and_forward(50)
        .var("ROUTING_RULES", &rules.to_string())
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    fake.set_down(true);
    let alerts = 24;
    for i in 0..alerts {
        let fired = metric_alert(&format!("storm-{i}"), "Fired");
        for _ in 0..(1 + usize::from(i % 3 == 0)) {
            let reply = t.post(&fired).await;
            assert!(matches!(reply.status, 200..=202), "{:?}", reply.body);
        }
    }
    assert!(fake.incidents().is_empty());
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
