//! The holes a review found in store and forward, each as the scenario
//! that broke the promise before its fix.

use super::*;
use crate::domain::delivery::{Fate, WorkerPolicy};

/// The webhook accepts `alert` and is killed while `SendMessage` hangs.
async fn killed_while_sending(r: &Rig, alert: &Alert, body: &[u8]) {
    r.queue.stall.store(true, Ordering::SeqCst);
    let mut first = Box::pin(r.delivery.accept(alert, body));
    tokio::select! {
        done = &mut first => panic!("the send should hang: {done:?}"),
        () = r.queue.entered.notified() => {}
    }
    drop(first);
    r.queue.stall.store(false, Ordering::SeqCst);
}

/// Alert "a" fires and resolves while the ITSM is down (it stays down):
/// notifications 1 and 2 are queued.
async fn fired_and_resolved_in_an_outage(r: &Rig) -> (Alert, Alert) {
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, fired_body) = alert("a", MonitorCondition::Fired);
    let (resolved, resolved_body) = alert("a", MonitorCondition::Resolved);
    r.delivery.accept(&fired, &fired_body).await.unwrap();
    r.now.fetch_add(60, Ordering::SeqCst);
    r.delivery.accept(&resolved, &resolved_body).await.unwrap();
    (fired, resolved)
}

fn sent_seqs(r: &Rig) -> Vec<u64> {
    r.queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect()
}

/// Hole 1: the webhook wrote the record before SendMessage; Azure's retry
/// arriving while that send hangs (and then fails) was answered 202
/// `already_queued` with nothing in the queue.
#[tokio::test]
async fn a_repeat_while_the_first_send_hangs_is_not_answered_202() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.queue.stall.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    let first = r.delivery.accept(&fired, &body);
    let repeat = async {
        r.queue.entered.notified().await;
        // Bounded: a repeat that tried to send would wait on the stalled queue.
        let repeat = tokio::time::timeout(Duration::from_secs(5), r.delivery.accept(&fired, &body))
            .await
            .unwrap_or_else(|_| Err(ProcessError::Queue(QueueError("sent twice at once".into()))));
        // Then the first send fails.
        r.queue.refuse.store(true, Ordering::SeqCst);
        r.queue.release.notify_one();
        repeat
    };
    let (first, repeat) = tokio::join!(first, repeat);
    assert!(matches!(first, Err(ProcessError::Queue(_))), "{first:?}");
    assert!(
        matches!(repeat, Err(ProcessError::InProgress)),
        "a 2xx only once the notification is in the queue: {repeat:?}"
    );
    assert!(sent_seqs(&r).is_empty());
    // Azure's next retry sends it: same number.
    r.queue.refuse.store(false, Ordering::SeqCst);
    r.queue.stall.store(false, Ordering::SeqCst);
    let again = r.delivery.accept(&fired, &body).await;
    assert_eq!(queued(&again), Some((1, QueueReason::AlreadyQueued)));
    assert_eq!(sent_seqs(&r), [1]);
}

/// Hole 1, the other way: the invocation is killed at its timeout while
/// sending. Its lease holds Azure's retry off (503) until it has run out;
/// then the retry sends the same number.
#[tokio::test]
async fn a_sender_killed_mid_send_leaves_a_number_that_the_retry_sends() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.queue.stall.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    killed_while_sending(&r, &fired, &body).await;
    let early = r.delivery.accept(&fired, &body).await;
    assert!(matches!(early, Err(ProcessError::InProgress)), "{early:?}");
    assert!(sent_seqs(&r).is_empty());
    r.now.fetch_add(61, Ordering::SeqCst);
    let retried = r.delivery.accept(&fired, &body).await;
    assert_eq!(queued(&retried), Some((1, QueueReason::AlreadyQueued)));
    assert_eq!(sent_seqs(&r), [1]);
    assert_eq!(r.record("a").await.queue.sent_seq, 1);
}

/// Hole 1's stranding: a number whose sender died before sending holds
/// nothing back: the alert's next notification is delivered at once.
#[tokio::test]
async fn a_number_that_never_reached_the_queue_strands_nothing() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.queue.stall.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    killed_while_sending(&r, &fired, &body).await;
    r.now.fetch_add(61, Ordering::SeqCst);
    let (resolved, body) = alert("a", MonitorCondition::Resolved);
    let behind = r.delivery.accept(&resolved, &body).await;
    assert_eq!(queued(&behind), Some((2, QueueReason::Behind)));
    r.itsm.down.store(false, Ordering::SeqCst);
    let fate = r
        .delivery
        .deliver_queued(&received(&resolved, 2, 1), &WorkerPolicy::default())
        .await;
    assert!(
        matches!(fate, Fate::Delivered(_)),
        "no wait for 1: {fate:?}"
    );
}

/// Hole 6: a container cooling down after an inline failure queued without
/// looking at the record, past a live claim the inline path answers 503 for.
#[tokio::test]
async fn the_cool_down_path_does_not_jump_a_live_claim() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (other, body) = alert("b", MonitorCondition::Fired);
    r.delivery.accept(&other, &body).await.unwrap();
    // Another container's inline attempt holds alert a right now.
    let now = r.now.load(Ordering::SeqCst);
    let mut claim = r.record("b").await;
    claim.alert_id = "a".into();
    claim.correlation_key = correlation_key("a");
    claim.lease_until = now + 60;
    claim.queued_seq = 0;
    claim.queued_digest = None;
    claim.queue = Default::default();
    claim.version = 1;
    r.store.put(&claim, None, now).await.unwrap();
    let (resolved, body) = alert("a", MonitorCondition::Resolved);
    let answer = r.delivery.accept(&resolved, &body).await;
    assert!(
        matches!(answer, Err(ProcessError::InProgress)),
        "the same rule as inline: {answer:?}"
    );
    assert_eq!(sent_seqs(&r), [1], "only b's Fired is queued");
}

/// Hole 7: two queuings of one alert at once could reach the queue as 2
/// before 1, and the worker then held 2 while FIFO held 1 behind it.
#[tokio::test]
async fn two_queuings_of_one_alert_at_once_reach_the_queue_in_number_order() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.queue.stall.store(true, Ordering::SeqCst);
    let (fired, fired_body) = alert("a", MonitorCondition::Fired);
    let (resolved, resolved_body) = alert("a", MonitorCondition::Resolved);
    let first = r.delivery.accept(&fired, &fired_body);
    let second = async {
        r.queue.entered.notified().await;
        r.queue.stall.store(false, Ordering::SeqCst);
        let second = r.delivery.accept(&resolved, &resolved_body).await;
        r.queue.release.notify_one();
        second
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(queued(&first), Some((1, QueueReason::ItsmFailed)));
    assert!(
        matches!(second, Err(ProcessError::InProgress)),
        "not sent past number 1 while it is being sent: {second:?}"
    );
    let again = r.delivery.accept(&resolved, &resolved_body).await;
    assert_eq!(queued(&again), Some((2, QueueReason::ItsmDown)));
    assert_eq!(sent_seqs(&r), [1, 2]);
}

/// Hole 4: refusals counted by SQS receives parked a notification at its
/// first refusal after an outage, and the alert's Resolved then went past
/// it; the redriven Fired was stale: no incident, ever.
#[tokio::test]
async fn refusals_decide_a_park_and_a_redrive_ends_the_alert_right() {
    let r = rig();
    let policy = WorkerPolicy::default();
    let (fired, resolved) = fired_and_resolved_in_an_outage(&r).await;
    // A long outage: 40 receives of the Fired.
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 40), &policy)
        .await;
    assert!(matches!(fate, Fate::Retry { .. }), "{fate:?}");
    // The ITSM comes back refusing for a moment (401 while it restarts).
    r.itsm.refuse.store(true, Ordering::SeqCst);
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 41), &policy)
        .await;
    assert!(
        matches!(fate, Fate::Retry { .. }),
        "one refusal after an outage is not a park: {fate:?}"
    );
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 42), &policy)
        .await;
    assert!(matches!(fate, Fate::Retry { .. }), "{fate:?}");
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 43), &policy)
        .await;
    assert!(
        matches!(fate, Fate::Parked(ref why) if why.contains("403")),
        "{fate:?}"
    );
    // The Resolved parks behind it rather than going past it.
    r.itsm.refuse.store(false, Ordering::SeqCst);
    r.itsm.down.store(false, Ordering::SeqCst);
    let fate = r
        .delivery
        .deliver_queued(&received(&resolved, 2, 1), &policy)
        .await;
    assert!(
        matches!(fate, Fate::Parked(ref why) if why.contains("parked")),
        "{fate:?}"
    );
    let (_, again) = alert("a", MonitorCondition::Resolved);
    let inline = r
        .delivery
        .accept(&resolved, &[again, b" ".to_vec()].concat())
        .await;
    assert!(
        matches!(queued(&inline), Some((3, _))),
        "a new notification queues behind the parked ones: {inline:?}"
    );
    // The operator fixed the credentials and redrives: 1, 2, then 3.
    let calls = r.itsm_calls();
    for (alert, seq) in [(&fired, 1), (&resolved, 2), (&resolved, 3)] {
        let fate = r
            .delivery
            .deliver_queued(&received(alert, seq, 1), &policy)
            .await;
        assert!(matches!(fate, Fate::Delivered(_)), "{seq}: {fate:?}");
    }
    let rec = r.record("a").await;
    assert_eq!(rec.state, RecordState::Resolved, "one incident, resolved");
    assert_eq!(rec.delivered_seq, 3);
    let calls: Vec<_> = r.itsm.calls.lock().unwrap()[calls..].to_vec();
    assert_eq!(calls, ["find", "create", "resolve"]);
}

/// SQS's own redrive policy would move a message still failing after
/// maxReceiveCount receives without the record knowing, and the alert's
/// later notifications would then go past it: the worker parks it itself.
#[tokio::test]
async fn the_last_receive_parks_in_the_record_so_later_ones_wait_behind() {
    let r = rig();
    let policy = WorkerPolicy {
        max_receives: Some(10),
        ..WorkerPolicy::default()
    };
    let (fired, resolved) = fired_and_resolved_in_an_outage(&r).await;
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 9), &policy)
        .await;
    assert!(matches!(fate, Fate::Retry { .. }), "{fate:?}");
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 10), &policy)
        .await;
    assert!(
        matches!(fate, Fate::Parked(ref why) if why.contains("10 receives")),
        "{fate:?}"
    );
    r.itsm.down.store(false, Ordering::SeqCst);
    let fate = r
        .delivery
        .deliver_queued(&received(&resolved, 2, 1), &policy)
        .await;
    assert!(
        matches!(fate, Fate::Parked(_)),
        "behind the parked Fired: {fate:?}"
    );
    for (alert, seq) in [(&fired, 1), (&resolved, 2)] {
        let fate = r
            .delivery
            .deliver_queued(&received(alert, seq, 1), &policy)
            .await;
        assert!(matches!(fate, Fate::Delivered(_)), "{seq}: {fate:?}");
    }
    assert_eq!(r.record("a").await.state, RecordState::Resolved);
}

/// Found by the simulation (its finding 4): a Resolved parked behind its
/// Fired whose dead-letter send failed stayed in the queue; after the
/// redrive the Fired and a later copy were delivered in one batch past it,
/// and the Resolved was then taken for a copy and deleted: the incident
/// stayed open. Every parked number is now in the record.
#[tokio::test]
async fn a_parked_number_is_never_taken_for_a_copy_of_one_delivered_past_it() {
    let r = rig();
    let policy = WorkerPolicy {
        permanent_attempts: 1,
        ..WorkerPolicy::default()
    };
    let (fired, resolved) = fired_and_resolved_in_an_outage(&r).await;
    r.itsm.down.store(false, Ordering::SeqCst);
    r.itsm.refuse.store(true, Ordering::SeqCst);
    let fate = r
        .delivery
        .deliver_queued(&received(&fired, 1, 1), &policy)
        .await;
    assert!(matches!(fate, Fate::Parked(_)), "{fate:?}");
    // The Resolved parks behind it (its dead-letter send then fails, so it
    // stays in the queue), and Azure's later copy of the Fired, number 3, too.
    let fate = r
        .delivery
        .deliver_queued(&received(&resolved, 2, 1), &policy)
        .await;
    assert!(matches!(fate, Fate::Parked(_)), "{fate:?}");
    let (_, copy) = alert("a", MonitorCondition::Fired);
    let queued3 = r
        .delivery
        .accept(&fired, &[copy, b" ".to_vec()].concat())
        .await;
    assert!(matches!(queued(&queued3), Some((3, _))), "{queued3:?}");
    r.itsm.refuse.store(false, Ordering::SeqCst);
    // The breaker the outage opened: its probe is due by the redrive.
    r.now.fetch_add(31, Ordering::SeqCst);
    // The redrive puts 1 and 3 behind 2: one batch of 2, 1, 3.
    let batch = [2, 1, 3].map(|seq| {
        let alert = if seq == 2 { &resolved } else { &fired };
        Ok(received(alert, seq, 1))
    });
    let fates = r.delivery.deliver_batch(&batch, &policy).await;
    assert!(matches!(fates[0], Fate::Parked(_)), "{fates:?}");
    assert!(matches!(fates[1], Fate::Delivered(_)), "{fates:?}");
    assert!(
        matches!(fates[2], Fate::Parked(_)),
        "3 waits behind 2: {fates:?}"
    );
    // 2 comes back, then the redriven 3.
    for (alert, seq) in [(&resolved, 2), (&fired, 3)] {
        let fate = r
            .delivery
            .deliver_queued(&received(alert, seq, 1), &policy)
            .await;
        assert!(matches!(fate, Fate::Delivered(_)), "{seq}: {fate:?}");
    }
    let rec = r.record("a").await;
    assert_eq!(rec.state, RecordState::Resolved, "the incident resolved");
    assert!(rec.queue.parked.is_empty());
}

mod lag;
