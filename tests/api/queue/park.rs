//! Parking on SQS: what a refusal after an outage does, and a redrive.

use super::*;

/// Hole 4, the whole path on SQS: an outage piles up receives; one refusal
/// after it does not park; three do; the alert's Resolved parks behind its
/// Fired instead of going past it; the operator's redrive (the parked
/// messages back to the queue, in order, in their groups) ends the alert
/// right: one incident, resolved.
#[tokio::test]
async fn a_park_after_an_outage_holds_the_alert_and_its_redrive_ends_it_right() {
    let (t, fake) = spawn(50).await;
    let q = t.queues.as_ref().unwrap();
    let esm = Esm { t: &t };
    fake.set_down(true);
    let fired = metric_alert("parked", "Fired");
    let resolved = metric_alert("parked", "Resolved");
    assert_eq!(t.post(&fired).await.outcome(), "queued");
    assert_eq!(t.post(&resolved).await.outcome(), "queued");
    // The outage: the Fired is received again and again.
    for _ in 0..4 {
        esm.round().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    fake.set_down(false);
    let refusal = || {
        ResponseTemplate::new(401)
            .set_body_json(json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}))
    };
    // One refusal while the ITSM restarts: not a park.
    fake.fail_next(refusal());
    esm.round().await;
    assert_eq!(esm.depth(&q.dlq_url).await, 0, "one refusal is not a park");
    // The credentials really are wrong now: parked after three in a row.
    for _ in 0..3 {
        fake.fail_next(refusal());
    }
    esm.drain().await;
    assert!(fake.incidents().is_empty());
    let parked: Vec<String> = take_dead_letters(&t)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let seqs: Vec<u64> = parked
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        [1, 2],
        "the Resolved parked behind its Fired, in order"
    );
    // The redrive: back to the queue in their group, in order.
    redrive(&t, &parked).await;
    esm.drain().await;
    let incidents = fake.incidents();
    assert_eq!(incidents.len(), 1, "one incident");
    assert_eq!(incidents[0]["state"], "6", "resolved, as the alert is");
}
