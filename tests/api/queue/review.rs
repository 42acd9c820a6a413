//! What an adversarial review tried on SQS (moto): each a scenario that
//! broke the promise once, or might have, and holds now.

use super::*;

/// Held on main since 510c3ff (the worker parks on the last receive
/// itself); kept as the whole path over SQS. The template dead-letters a
/// message after `QueueMaxReceiveCount` (60) receives, about 27 hours of
/// ITSM outage with the default backoff; here 3 receives stand for them.
/// Before that commit SQS moved the Fired to the dead-letter queue by
/// itself, without a `reason` and without the record knowing; the alert's
/// Resolved, queued later in the outage, went past it
/// (`resolved_without_incident`), and the redriven Fired was then "a copy
/// of a delivered number", deleted unsent: no incident, ever.
#[tokio::test]
async fn a_message_sqs_dead_letters_by_itself_is_not_overtaken_and_its_redrive_delivers_it() {
    // As the template deploys it: the worker is told the redrive policy.
    let t = super::store_and_forward(3)
        .var("QUEUE_MAX_RECEIVE_COUNT", "3")
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    let esm = Esm { t: &t };
    fake.set_down(true);
    let fired = metric_alert("sqs-dead-lettered", "Fired");
    assert_eq!(t.post(&fired).await.outcome(), "queued");
    // The outage: the worker receives the Fired again and again.
    for _ in 0..3 {
        esm.round().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // Late in the outage the alert resolves: queued behind its Fired.
    let resolved = t.post(&metric_alert("sqs-dead-lettered", "Resolved")).await;
    assert_eq!(resolved.outcome(), "queued", "{:?}", resolved.body);
    // The ITSM is back.
    fake.set_down(false);
    esm.drain().await;
    let dead = take_dead_letters(&t).await;
    let without_reason = dead.iter().filter(|(_, r)| r.is_none()).count();
    // The operator redrives what the dead-letter queue holds.
    let bodies: Vec<String> = dead.into_iter().map(|(b, _)| b).collect();
    redrive(&t, &bodies).await;
    esm.drain().await;
    let record = t.record(&alert_id(&fired)).await.unwrap();
    let incidents = fake.incidents();
    assert_eq!(
        incidents.len(),
        1,
        "one incident for an alert that fired; the record ended {:?} with delivered_seq {}",
        record.state,
        record.delivered_seq
    );
    assert_eq!(incidents[0]["state"], "6", "resolved, as the alert is");
    assert_eq!(
        without_reason, 0,
        "every dead-lettered notification carries its reason"
    );
}

/// Finding 1, on the durable path with the template's shape: the inline
/// create times out (`ITSM_TIMEOUT_MS`) while ServiceNow is still
/// inserting, no second attempt fits the inline budget, the claim is
/// released (`look_until` = now: ServiceNow's search lag is 0) and the
/// notification is queued. The worker takes it at once, looks, finds
/// nothing yet, and creates again.
#[tokio::test]
async fn the_worker_does_not_create_again_what_the_inline_attempt_is_still_creating() {
    let t = Spawn::default()
        .queue(50)
        .var("ITSM_TIMEOUT_MS", "300")
        .var("ITSM_DEADLINE_MS", "300")
        .var("INLINE_BUDGET_MS", "500")
        .var("WORKER_DEADLINE_MS", "1000")
        .var("WORKER_BACKOFF_BASE_SECS", "1")
        .var("WORKER_BACKOFF_MAX_SECS", "1")
        .start()
        .await;
    let sn = crate::review::SlowInserts::mount(Duration::from_millis(2000), &t.itsm).await;
    let fired = metric_alert("slow-insert-queued", "Fired");
    let key = correlation_key(&alert_id(&fired));
    let reply = t.post(&fired).await;
    assert_eq!((reply.status, reply.outcome()), (202, "queued"));
    Esm { t: &t }.drain().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sn.committed(&key), 1, "one incident for one firing");
}
