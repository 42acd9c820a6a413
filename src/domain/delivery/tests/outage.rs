//! The worker and the webhook through an ITSM outage, with the breaker
//! shared by several containers: calls while the ITSM is down are bounded
//! by the probe schedule, the first delivery comes within one probe
//! interval of its return, and every alert still ends exactly once, in order.

use super::*;
use crate::domain::delivery::{Fate, Received, WorkerPolicy};

/// `n` alerts fired during an outage, each queued once (their messages).
async fn queued_in_an_outage(r: &Rig, n: usize) -> Vec<Alert> {
    r.itsm.down.store(true, Ordering::SeqCst);
    let mut alerts = Vec::new();
    for i in 0..n {
        let (a, body) = alert(&format!("alert-{i}"), MonitorCondition::Fired);
        assert!(queued(&r.delivery.accept(&a, &body).await).is_some());
        alerts.push(a);
    }
    assert_eq!(r.itsm_calls(), 1, "only the first inline attempt called");
    alerts
}

fn batch(alerts: &[Alert], receives: u32) -> Vec<Result<Received, String>> {
    alerts
        .iter()
        .map(|a| Ok(received(a, 1, receives)))
        .collect()
}

fn retry_after(f: &Fate) -> Option<u64> {
    match f {
        Fate::Retry { after, .. } => Some(after.as_secs()),
        _ => None,
    }
}

#[tokio::test]
async fn a_batch_while_the_itsm_is_down_goes_back_untried_until_the_probe() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 5).await;
    let w = worker(&r);
    let policy = WorkerPolicy::default();
    r.now.fetch_add(10, Ordering::SeqCst);
    let fates = w.deliver_batch(&batch(&alerts, 1), &policy).await;
    assert_eq!(
        r.itsm_calls(),
        1,
        "no call while the breaker is open: {fates:?}"
    );
    // Back when the probe is due (30 s after the failure, 20 s from now),
    // not after the worker's backoff.
    assert!(
        fates.iter().all(|f| retry_after(f) == Some(20)),
        "{fates:?}"
    );
}

#[tokio::test]
async fn a_due_probe_that_fails_costs_one_call_and_one_that_succeeds_drains_the_batch() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 5).await;
    let (one, two) = (worker(&r), worker(&r));
    let policy = WorkerPolicy::default();
    r.now.fetch_add(30, Ordering::SeqCst);
    let fates = one.deliver_batch(&batch(&alerts, 1), &policy).await;
    assert_eq!(r.itsm_calls(), 2, "one probe: {fates:?}");
    assert!(
        fates.iter().all(|f| retry_after(f) == Some(30)),
        "{fates:?}"
    );
    // An hour of outage, batches every 10 s on two containers: one call per probe.
    for _ in 0..360 {
        r.now.fetch_add(10, Ordering::SeqCst);
        for w in [&one, &two] {
            w.deliver_batch(&batch(&alerts, 2), &policy).await;
        }
    }
    assert_eq!(r.itsm_calls(), 2 + 3600 / 30, "one call per probe interval");
    // The ITSM is back: within one probe interval the whole batch is delivered.
    r.itsm.down.store(false, Ordering::SeqCst);
    let back = r.now.load(Ordering::SeqCst);
    let calls_before = r.itsm_calls();
    let mut delivered_at = None;
    for _ in 0..4 {
        r.now.fetch_add(10, Ordering::SeqCst);
        let fates = one.deliver_batch(&batch(&alerts, 3), &policy).await;
        if fates.iter().all(|f| matches!(f, Fate::Delivered(_))) {
            delivered_at = Some(r.now.load(Ordering::SeqCst));
            break;
        }
    }
    let delivered_at = delivered_at.expect("delivered within a probe interval and a batch");
    assert!(delivered_at - back <= 30 + 10, "{}", delivered_at - back);
    // Exactly once: one incident each, and the webhook calls inline again.
    let after: Vec<&str> = r.itsm.calls.lock().unwrap()[calls_before..].to_vec();
    // One create per alert; the alert whose inline create failed is looked
    // for first (a failed create may have taken effect).
    assert_eq!(
        after,
        ["find", "create", "create", "create", "create", "create"]
    );
    for a in &alerts {
        assert_eq!(r.record(&a.alert_id).await.delivered_seq, 1);
    }
    let (new, body) = alert("after", MonitorCondition::Fired);
    assert!(matches!(
        r.delivery.accept(&new, &body).await,
        Ok(Accepted::Processed(_))
    ));
}

#[tokio::test]
async fn two_workers_at_the_probe_time_make_one_call() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 4).await;
    let (one, two) = (worker(&r), worker(&r));
    let policy = WorkerPolicy::default();
    r.now.fetch_add(30, Ordering::SeqCst);
    let (first, second) = (batch(&alerts[..2], 1), batch(&alerts[2..], 1));
    let (a, b) = tokio::join!(
        one.deliver_batch(&first, &policy),
        two.deliver_batch(&second, &policy)
    );
    assert_eq!(r.itsm_calls(), 2, "one probe between them: {a:?} {b:?}");
}

#[tokio::test]
async fn a_message_held_on_its_last_receive_is_parked_in_the_record() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 1).await;
    let w = worker(&r);
    let policy = WorkerPolicy {
        max_receives: Some(3),
        ..WorkerPolicy::default()
    };
    let fates = w.deliver_batch(&batch(&alerts, 3), &policy).await;
    assert!(
        matches!(&fates[0], Fate::Parked(why) if why.contains("ITSM unavailable")),
        "{fates:?}"
    );
    assert_eq!(r.record("alert-0").await.queue.parked, vec![1]);
}

#[tokio::test]
async fn a_refusal_closes_the_breaker_and_is_counted_as_a_refusal() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 2).await;
    let w = worker(&r);
    r.itsm.down.store(false, Ordering::SeqCst);
    r.itsm.refuse.store(true, Ordering::SeqCst);
    r.now.fetch_add(30, Ordering::SeqCst);
    let fates = w
        .deliver_batch(&batch(&alerts, 1), &WorkerPolicy::default())
        .await;
    // Both reach the ITSM: a 403 says it is up (configuration to fix).
    assert_eq!(r.itsm_calls(), 3, "{fates:?}");
    assert_eq!(
        w.breaker().gate(true).await,
        crate::domain::delivery::breaker::Gate::Closed
    );
    assert_eq!(r.record("alert-1").await.queue.refusals, 1);
}

#[tokio::test]
async fn a_probe_taken_by_an_attempt_that_never_called_is_given_back() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 1).await;
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(30, Ordering::SeqCst);
    // The due probe goes to a notification queued behind alert-0's: it
    // makes no call, and gives the probe back at once.
    let (resolved, body) = alert("alert-0", MonitorCondition::Resolved);
    let behind = r.delivery.accept(&resolved, &body).await;
    assert_eq!(queued(&behind), Some((2, QueueReason::Behind)));
    let (other, body) = alert("other", MonitorCondition::Fired);
    let done = r.delivery.accept(&other, &body).await;
    assert!(matches!(done, Ok(Accepted::Processed(_))), "{done:?}");
    assert_eq!(alerts.len(), 1);
}

/// A delivery that waits on the bridge's own state (`Busy`: a group's
/// parent another attempt is making) is retried by itself: the breaker
/// stays closed and the rest of the batch is delivered.
#[tokio::test]
async fn a_busy_delivery_holds_nothing_else_back_and_leaves_the_breaker_closed() {
    let r = rig();
    let alerts = queued_in_an_outage(&r, 3).await;
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(31, Ordering::SeqCst);
    let w = worker(&r);
    let policy = WorkerPolicy::default();
    // The probe is due: the first delivery takes it and finds the ITSM up.
    let fates = w.deliver_batch(&batch(&alerts[..1], 1), &policy).await;
    assert!(matches!(fates[0], Fate::Delivered(_)), "{fates:?}");
    r.itsm.busy.store(true, Ordering::SeqCst);
    let fates = w.deliver_batch(&batch(&alerts[1..], 1), &policy).await;
    assert!(matches!(fates[0], Fate::Retry { .. }), "{fates:?}");
    assert!(
        matches!(fates[1], Fate::Delivered(_)),
        "held back: {fates:?}"
    );
    assert!(
        matches!(
            w.breaker.gate(false).await,
            crate::domain::delivery::breaker::Gate::Closed
        ),
        "the breaker opened on Busy"
    );
}
