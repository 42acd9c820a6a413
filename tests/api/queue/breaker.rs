//! The ITSM's breaker over moto (SQS, DynamoDB, and Lambda's event source
//! mapping API) and the fake ServiceNow on loopback: while the ITSM is down
//! the scheduled round pauses the worker's mapping and probes once per
//! interval; the round after it is back resumes the mapping and the
//! backlog flows, every alert exactly once, in order. Time is the app's
//! clock, moved by hand: rounds every 10 s of a 10-minute outage.

use std::sync::Arc;

use itsm_bridge::adapters::queue::EventSourceIntake;
use itsm_bridge::domain::correlation::correlation_key;
use itsm_bridge::domain::ports::Intake;
use itsm_bridge::inbound::sync::round;

use super::{Esm, incidents_by_key, queue_fired_and_resolved, store_and_forward};
use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

async fn spawn() -> (TestApp, Fake, Arc<EventSourceIntake>) {
    let mut t = store_and_forward(50)
        .var("BREAKER_PROBE_SECS", "60")
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    let aws = t.aws.clone().unwrap();
    let uuid = crate::moto::event_source_mapping(&aws).await;
    let intake = Arc::new(EventSourceIntake::new(
        aws_sdk_lambda::Client::new(&aws),
        uuid,
    ));
    t.app.intake = Some(intake.clone());
    (t, fake, intake)
}

async fn itsm_calls(t: &TestApp) -> usize {
    t.itsm.received_requests().await.unwrap_or_default().len()
}

/// Lambda's poller: one batch, unless the mapping is paused.
async fn poll(esm: &Esm<'_>, intake: &EventSourceIntake) -> usize {
    if intake.paused().await.unwrap() {
        return 0;
    }
    esm.round().await.received
}

#[tokio::test]
async fn an_outage_costs_a_probe_per_interval_and_the_backlog_flows_the_round_it_is_back() {
    let (t, fake, intake) = spawn().await;
    fake.set_down(true);
    let alerts = 20;
    queue_fired_and_resolved(&t, "breaker", alerts).await;
    let esm = Esm { t: &t };
    // The first batch meets the open breaker: handed back untried.
    let before = itsm_calls(&t).await;
    assert_eq!(poll(&esm, &intake).await, 10);
    assert_eq!(
        itsm_calls(&t).await,
        before,
        "no call while the breaker is open"
    );
    // Ten minutes of outage, a round every 10 s, the poller between them.
    let mut probes = 0;
    for _ in 0..60 {
        t.advance(10);
        let answer = round(&t.app).await.unwrap();
        probes += usize::from(answer["breaker"]["itsm"] == "still_down");
        assert_eq!(answer["breaker"]["intake_paused"], true, "{answer}");
        assert_eq!(poll(&esm, &intake).await, 0, "paused: nothing received");
    }
    assert_eq!(probes, 10, "one probe a minute");
    assert_eq!(
        itsm_calls(&t).await,
        before + probes,
        "the probes, nothing else"
    );
    assert!(fake.incidents().is_empty());

    // Back: the next round whose probe is due resumes the mapping.
    fake.set_down(false);
    let mut rounds = 0;
    loop {
        t.advance(10);
        rounds += 1;
        let answer = round(&t.app).await.unwrap();
        if answer["breaker"]["itsm"] == "recovered" {
            assert_eq!(answer["breaker"]["intake_paused"], false, "{answer}");
            break;
        }
        assert!(rounds <= 6, "recovered within one probe interval: {answer}");
    }
    assert!(!intake.paused().await.unwrap());
    esm.drain().await;
    let incidents = incidents_by_key(&fake);
    assert_eq!(incidents.len(), alerts);
    for i in 0..alerts {
        let id = alert_id(&metric_alert(&format!("breaker-{i}"), "Fired"));
        let found = &incidents[&correlation_key(&id)];
        assert_eq!(found.len(), 1, "{id}: exactly one incident");
        assert_eq!(found[0]["state"], "6", "{id}: resolved, in order");
    }
}

#[tokio::test]
async fn a_round_resumes_a_mapping_left_paused_once_the_itsm_is_up() {
    let (t, _fake, intake) = spawn().await;
    intake.pause().await.unwrap();
    assert!(intake.paused().await.unwrap());
    let answer = round(&t.app).await.unwrap();
    assert_eq!(answer["breaker"]["itsm"], "up");
    assert!(!intake.paused().await.unwrap(), "{answer}");
}
