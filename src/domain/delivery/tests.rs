//! Store and forward against the memory store, an ITSM that is up or down
//! and a queue that keeps or refuses what it is sent: no HTTP.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::alert::MonitorCondition;
use crate::domain::correlation::IncidentRef;
use crate::domain::delivery::breaker::BreakerPolicy;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::outcome::Outcome;
use crate::domain::ports::{ItsmClient, ItsmError, QueueError, ResolveOutcome};
use crate::domain::retry::RetryPolicy;
use crate::domain::settings::Settings;

#[derive(Default)]
struct Itsm {
    down: AtomicBool,
    /// Answers 403 (a refusal) instead.
    refuse: AtomicBool,
    /// The next create answers `Busy` (the bridge's own state waits).
    busy: AtomicBool,
    calls: Mutex<Vec<&'static str>>,
}

impl Itsm {
    fn call(&self, name: &'static str) -> Result<(), ItsmError> {
        self.calls.lock().unwrap().push(name);
        if self.refuse.load(Ordering::SeqCst) {
            Err(ItsmError::Rejected {
                status: 403,
                message: "insufficient rights".into(),
            })
        } else if self.down.load(Ordering::SeqCst) {
            Err(ItsmError::Unavailable("503".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ItsmClient for Itsm {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        if self.busy.swap(false, Ordering::SeqCst) {
            return Err(ItsmError::Busy("a group's parent is being created".into()));
        }
        self.call("create")?;
        Ok(IncidentRef {
            id: "sys1".into(),
            number: "INC1".into(),
        })
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.call("find").map(|()| None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.call("resolve").map(|()| ResolveOutcome::Resolved)
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call("reopen")
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call("note")
    }
}

/// A queue that keeps (seq, body) or, when `refuse`, fails; with `stall`,
/// a send waits inside the call (after `entered`) until `release`.
#[derive(Default)]
struct Queue {
    refuse: AtomicBool,
    stall: AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    sent: Mutex<Vec<(u64, Vec<u8>)>>,
}

#[async_trait]
impl DeliveryQueue for Queue {
    async fn send(&self, n: &QueuedNotification<'_>) -> Result<(), QueueError> {
        if self.stall.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        if self.refuse.load(Ordering::SeqCst) {
            return Err(QueueError("throttled".into()));
        }
        self.sent.lock().unwrap().push((n.seq, n.body.to_vec()));
        Ok(())
    }
}

struct Rig {
    delivery: Delivery,
    itsm: Arc<Itsm>,
    queue: Arc<Queue>,
    store: Arc<MemoryStore>,
    now: Arc<AtomicI64>,
}

/// The ITSM's breaker over the rig's store: probes 30 s apart.
fn breaker(store: &Arc<MemoryStore>, clock: &Clock) -> Arc<Breaker> {
    breaker_viewing(store, clock, 0)
}

/// The same, trusting its view of the breaker for `view_secs`.
fn breaker_viewing(store: &Arc<MemoryStore>, clock: &Clock, view_secs: i64) -> Arc<Breaker> {
    let policy = BreakerPolicy {
        probe_secs: 30,
        probe_max_secs: 30,
        view_secs,
    };
    Arc::new(Breaker::new(store.clone(), "test", policy, clock.clone()))
}

fn rig() -> Rig {
    let itsm = Arc::new(Itsm::default());
    let queue = Arc::new(Queue::default());
    let store = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicI64::new(1_750_000_000));
    let t = now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || Bridge::new(itsm.clone(), store.clone(), settings.clone(), clock.clone());
    Rig {
        delivery: Delivery::new(
            bridge(),
            bridge(),
            queue.clone(),
            breaker(&store, &clock),
            clock.clone(),
        ),
        itsm,
        queue,
        store,
        now,
    }
}

/// Another container on the rig's store, queue and ITSM (its own breaker view).
fn worker(r: &Rig) -> Delivery {
    let t = r.now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || {
        Bridge::new(
            r.itsm.clone(),
            r.store.clone(),
            settings.clone(),
            clock.clone(),
        )
    };
    Delivery::new(
        bridge(),
        bridge(),
        r.queue.clone(),
        breaker(&r.store, &clock),
        clock.clone(),
    )
}

/// Queued notification `seq` of `alert`, as the queue hands it over.
fn received(alert: &Alert, seq: u64, receives: u32) -> worker::Received {
    worker::Received {
        alert: alert.clone(),
        seq,
        group: correlation_key(&alert.alert_id),
        receives,
    }
}

fn alert(id: &str, condition: MonitorCondition) -> (Alert, Vec<u8>) {
    let body = format!("{{\"id\":\"{id}\",\"condition\":\"{condition:?}\"}}").into_bytes();
    (Alert::new(id, condition), body)
}

impl Rig {
    async fn record(&self, id: &str) -> CorrelationRecord {
        let now = self.now.load(Ordering::SeqCst);
        self.store.get(id, now).await.unwrap().unwrap()
    }
    fn itsm_calls(&self) -> usize {
        self.itsm.calls.lock().unwrap().len()
    }
}

fn queued(a: &Result<Accepted, ProcessError>) -> Option<(u64, QueueReason)> {
    match a {
        Ok(Accepted::Queued { seq, reason, .. }) => Some((*seq, *reason)),
        _ => None,
    }
}

#[tokio::test]
async fn a_failed_inline_attempt_queues_and_opens_the_breaker_for_the_next_attempts() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    let first = r.delivery.accept(&fired, &body).await;
    assert_eq!(queued(&first), Some((1, QueueReason::ItsmFailed)));
    assert_eq!(r.itsm_calls(), 1);
    // Another alert while the breaker is open: queued without an ITSM call.
    let (other, body) = alert("b", MonitorCondition::Fired);
    let second = r.delivery.accept(&other, &body).await;
    assert_eq!(queued(&second), Some((1, QueueReason::ItsmDown)));
    let Ok(Accepted::Queued {
        failure: Some(why), ..
    }) = &second
    else {
        panic!("an itsm_down answer names the failure: {second:?}");
    };
    let said = why.to_string();
    assert_eq!(
        said.matches("ITSM unavailable").count(),
        1,
        "said once: {said}"
    );
    assert_eq!(
        r.itsm_calls(),
        1,
        "no inline attempt while the breaker is open"
    );
    assert_eq!(r.record("b").await.state, RecordState::Queued);
    // Once the probe is due, the next notification is the probe (and the ITSM is back).
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(31, Ordering::SeqCst);
    let (third, body) = alert("c", MonitorCondition::Fired);
    let done = r.delivery.accept(&third, &body).await.unwrap();
    assert!(matches!(done, Accepted::Processed(p) if p.outcome == Outcome::Created));
}

#[tokio::test]
async fn queued_work_holds_later_notifications_until_the_worker_delivers_it() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, fired_body) = alert("a", MonitorCondition::Fired);
    r.delivery.accept(&fired, &fired_body).await.unwrap();
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(60, Ordering::SeqCst);
    let (resolved, resolved_body) = alert("a", MonitorCondition::Resolved);
    let behind = r.delivery.accept(&resolved, &resolved_body).await;
    assert_eq!(queued(&behind), Some((2, QueueReason::Behind)));
    // The worker delivers both in order: one incident, resolved.
    let sent = r.queue.sent.lock().unwrap().clone();
    assert_eq!(sent.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2]);
    let created = r.delivery.deliver(&fired, 1).await.unwrap().unwrap();
    assert_eq!(created.outcome, Outcome::Created);
    let rec = r.record("a").await;
    assert!(
        rec.has_queued_work(r.now.load(Ordering::SeqCst), 3600),
        "seq 2 still waits"
    );
    let done = r.delivery.deliver(&resolved, 2).await.unwrap().unwrap();
    assert_eq!(done.outcome, Outcome::Resolved);
    let rec = r.record("a").await;
    assert_eq!((rec.queued_seq, rec.delivered_seq), (2, 2));
    // A copy of a delivered message (a repeated send, a redrive) is not
    // delivered again.
    assert_eq!(r.delivery.deliver(&resolved, 2).await.unwrap(), None);
    assert_eq!(r.delivery.deliver(&fired, 1).await.unwrap(), None);
    // Nothing waits now: the next notification goes inline.
    let again = r.delivery.accept(&resolved, &resolved_body).await.unwrap();
    assert!(matches!(again, Accepted::Processed(p) if p.outcome == Outcome::AlreadyResolved));
}

#[tokio::test]
async fn a_repeated_delivery_of_a_queued_notification_is_not_queued_again() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    r.delivery.accept(&fired, &body).await.unwrap();
    let again = r.delivery.accept(&fired, &body).await;
    assert_eq!(queued(&again), Some((1, QueueReason::AlreadyQueued)));
    assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_repeat_of_a_delivered_notification_holds_nothing_back() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    r.delivery.accept(&fired, &body).await.unwrap();
    r.itsm.down.store(false, Ordering::SeqCst);
    r.delivery.deliver(&fired, 1).await.unwrap();
    // Azure repeats it during another container's cool-down: not queued again.
    let again = r
        .delivery
        .enqueue(&fired, &body, None, QueueReason::ItsmDown)
        .await;
    assert_eq!(queued(&again), Some((1, QueueReason::AlreadyQueued)));
    let rec = r.record("a").await;
    assert_eq!((rec.queued_seq, rec.delivered_seq), (1, 1));
    assert!(!rec.has_queued_work(r.now.load(Ordering::SeqCst), 3600));
    assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_queue_that_refuses_means_an_error_and_azures_retry_sends_the_same_number_again() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.queue.refuse.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    let refused = r.delivery.accept(&fired, &body).await;
    assert!(
        matches!(refused, Err(ProcessError::Queue(_))),
        "{refused:?}"
    );
    let rec = r.record("a").await;
    assert_eq!(
        (rec.queued_seq, rec.queue.sent_seq),
        (1, 0),
        "the number stays taken, unconfirmed"
    );
    assert!(
        !rec.sending(r.now.load(Ordering::SeqCst)),
        "and nobody is sending it"
    );
    // Azure's retry, with the queue back, sends notification 1 again.
    r.queue.refuse.store(false, Ordering::SeqCst);
    let retried = r.delivery.accept(&fired, &body).await;
    assert_eq!(queued(&retried), Some((1, QueueReason::AlreadyQueued)));
    assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    assert_eq!(r.record("a").await.queue.sent_seq, 1, "now confirmed");
}

#[tokio::test]
async fn queued_work_past_the_horizon_no_longer_holds_the_alert() {
    let r = rig();
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    r.delivery.accept(&fired, &body).await.unwrap();
    // Its message was never delivered (dead-lettered and dropped, say).
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(6 * 24 * 3600, Ordering::SeqCst);
    let (resolved, body) = alert("a", MonitorCondition::Resolved);
    let inline = r.delivery.accept(&resolved, &body).await.unwrap();
    assert!(matches!(inline, Accepted::Processed(_)), "{inline:?}");
}

mod holes;
mod outage;
mod review;
mod review23;
mod review24;

#[tokio::test]
async fn a_queued_answer_carries_the_itsms_failure() {
    let failure = |a: &Result<Accepted, ProcessError>| match a {
        Ok(Accepted::Queued { failure, .. }) => failure.clone(),
        other => panic!("not queued: {other:?}"),
    };
    let r = rig();
    r.itsm.refuse.store(true, Ordering::SeqCst);
    let (fired, body) = alert("a", MonitorCondition::Fired);
    let refused = r.delivery.accept(&fired, &body).await;
    assert_eq!(
        failure(&refused),
        Some(ItsmError::Rejected {
            status: 403,
            message: "insufficient rights".into()
        })
    );
    r.itsm.refuse.store(false, Ordering::SeqCst);
    r.itsm.down.store(true, Ordering::SeqCst);
    let (other, body) = alert("b", MonitorCondition::Fired);
    let down = r.delivery.accept(&other, &body).await;
    assert_eq!(failure(&down), Some(ItsmError::Unavailable("503".into())));
    // The breaker is open now: the next is queued untried, with its reason.
    let (third, body) = alert("c", MonitorCondition::Fired);
    let held = r.delivery.accept(&third, &body).await;
    assert_eq!(queued(&held), Some((1, QueueReason::ItsmDown)));
    assert!(
        matches!(failure(&held), Some(ItsmError::Unavailable(why)) if why.contains("503")),
        "{held:?}"
    );
}
