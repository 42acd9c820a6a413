//! A review's findings in store and forward and the state machine, against
//! the memory store and the doubles beside: ignored so the branch stays
//! green; run them with `cargo test --lib delivery::tests::review -- --ignored`.

use super::*;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::settings::RefirePolicy;

const FIRST: &str = "2025-04-15T18:17:12Z";
const AGAIN: &str = "2025-04-15T18:41:00Z";

/// `rig()`, with a refire policy.
fn rig_refiring(refire: RefirePolicy) -> Rig {
    let itsm = Arc::new(Itsm::default());
    let queue = Arc::new(Queue::default());
    let store = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicI64::new(1_750_000_000));
    let t = now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        refire,
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

/// A notification of firing `fired_at`, as Azure sends it (the body differs
/// per firing and condition, as Azure's do).
fn firing(condition: MonitorCondition, fired_at: &str) -> (Alert, Vec<u8>) {
    let mut alert = Alert::new("a", condition);
    alert.fired_at = Some(fired_at.into());
    let body = format!("{{\"condition\":\"{condition:?}\",\"firedDateTime\":\"{fired_at}\"}}");
    (alert, body.into_bytes())
}

/// Finding 3. With `REFIRE_POLICY=reopen` (or `new`), the same alert id
/// fires again after it resolved. Azure then delivers the first firing's
/// Resolved again (its retry after an answer it did not get, or a second
/// action group): the bridge does not compare that Resolved's
/// `firedDateTime` with the firing on record, and resolves the incident of
/// the firing that is still going on. Here during an outage, through the
/// queue: the repeat is not the last queued notification, so its digest
/// does not match and it is queued as number 4, behind the refire.
#[tokio::test]
async fn a_repeat_of_an_earlier_firings_resolved_does_not_resolve_the_refired_incident() {
    let r = rig_refiring(RefirePolicy::Reopen);
    r.itsm.down.store(true, Ordering::SeqCst);
    let (fired, fired_body) = firing(MonitorCondition::Fired, FIRST);
    let (resolved, resolved_body) = firing(MonitorCondition::Resolved, FIRST);
    let (again, again_body) = firing(MonitorCondition::Fired, AGAIN);
    for (alert, body) in [
        (&fired, &fired_body),
        (&resolved, &resolved_body),
        (&again, &again_body),
        // Azure's repeat of the first firing's Resolved.
        (&resolved, &resolved_body),
    ] {
        r.now.fetch_add(5, Ordering::SeqCst);
        let answer = r.delivery.accept(alert, body).await;
        assert!(queued(&answer).is_some(), "202 queued: {answer:?}");
    }
    r.itsm.down.store(false, Ordering::SeqCst);
    let sent: Vec<(u64, Vec<u8>)> = r.queue.sent.lock().unwrap().clone();
    let calls_before = r.itsm_calls();
    for (seq, body) in &sent {
        let alert = [&fired_body, &resolved_body, &again_body]
            .iter()
            .position(|b| *b == body)
            .map(|i| [&fired, &resolved, &again][i])
            .unwrap();
        let done = r.delivery.deliver(alert, *seq).await;
        assert!(done.is_ok(), "{seq}: {done:?}");
    }
    let calls: Vec<_> = r.itsm.calls.lock().unwrap()[calls_before..].to_vec();
    let rec = r.record("a").await;
    assert_eq!(
        (rec.state, calls.last().copied()),
        (RecordState::Open, Some("reopen")),
        "the alert fires again: its incident stays reopened (ITSM calls {calls:?})"
    );
}

/// An ITSM whose resolve can be held inside the call (after `entered`)
/// until `release`, and which keeps the incident's state.
#[derive(Default)]
struct SlowResolve {
    stall: AtomicBool,
    down: AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    calls: Mutex<Vec<&'static str>>,
    resolved: AtomicBool,
}

#[async_trait]
impl ItsmClient for SlowResolve {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ItsmError::Unavailable("503".into()));
        }
        self.calls.lock().unwrap().push("create");
        Ok(IncidentRef {
            id: "sys1".into(),
            number: "INC1".into(),
        })
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        Ok(None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        if self.stall.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.calls.lock().unwrap().push("resolve");
        Ok(if self.resolved.swap(true, Ordering::SeqCst) {
            ResolveOutcome::AlreadyClosed
        } else {
            ResolveOutcome::Resolved
        })
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.calls.lock().unwrap().push("reopen");
        self.resolved.store(false, Ordering::SeqCst);
        Ok(())
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Ok(())
    }
}

/// Finding 3, without any repeat from Azure. The inline Resolved of an open
/// incident takes no claim while it talks to the ITSM, so a container in
/// its cool-down queues the alert's next notification (it fires again)
/// meanwhile as number 1; the Resolved's record write then loses, it sees
/// queued work and queues itself as number 2, behind the notification Azure
/// sent after it. The worker delivers them in that order: the refire finds
/// the incident open (a duplicate), the Resolved resolves it. Azure said
/// Resolved, then Fired again; the incident ends resolved.
#[tokio::test]
async fn a_refire_queued_during_an_inline_resolve_is_not_delivered_before_it() {
    let itsm = Arc::new(SlowResolve::default());
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(Queue::default());
    let now = Arc::new(AtomicI64::new(1_750_000_000));
    let t = now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        refire: RefirePolicy::Reopen,
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || Bridge::new(itsm.clone(), store.clone(), settings.clone(), clock.clone());
    // Two webhook containers over one store and one queue; one keeps its
    // view of the breaker a minute (so it still calls after two opened it).
    let one = Delivery::new(
        bridge(),
        bridge(),
        queue.clone(),
        breaker_viewing(&store, &clock, 60),
        clock.clone(),
    );
    let two = Delivery::new(
        bridge(),
        bridge(),
        queue.clone(),
        breaker(&store, &clock),
        clock.clone(),
    );
    let (fired, fired_body) = firing(MonitorCondition::Fired, FIRST);
    let (resolved, resolved_body) = firing(MonitorCondition::Resolved, FIRST);
    let (again, again_body) = firing(MonitorCondition::Fired, AGAIN);
    let created = one.accept(&fired, &fired_body).await.unwrap();
    assert!(matches!(created, Accepted::Processed(ref p) if p.outcome == Outcome::Created));
    // Container two saw the ITSM down for another alert: the breaker is open.
    itsm.down.store(true, Ordering::SeqCst);
    let (other, other_body) = alert("b", MonitorCondition::Fired);
    assert!(queued(&two.accept(&other, &other_body).await).is_some());
    itsm.down.store(false, Ordering::SeqCst);

    itsm.stall.store(true, Ordering::SeqCst);
    let resolving = one.accept(&resolved, &resolved_body);
    let refiring = async {
        itsm.entered.notified().await;
        now.fetch_add(1, Ordering::SeqCst);
        let answer = two.accept(&again, &again_body).await;
        itsm.release.notify_one();
        answer
    };
    let (resolving, refiring) = tokio::join!(resolving, refiring);
    assert!(
        resolving.is_ok() && refiring.is_ok(),
        "2xx for both: {resolving:?} {refiring:?}"
    );

    // The worker delivers what was queued for alert a, in the queue's order.
    let sent: Vec<(u64, Vec<u8>)> = queue.sent.lock().unwrap().clone();
    for (seq, body) in sent.iter().filter(|(_, b)| *b != other_body) {
        let alert = if *body == again_body {
            &again
        } else {
            &resolved
        };
        one.deliver(alert, *seq).await.unwrap();
    }
    let rec = store
        .get("a", now.load(Ordering::SeqCst))
        .await
        .unwrap()
        .unwrap();
    let calls = itsm.calls.lock().unwrap().clone();
    assert_eq!(
        rec.state,
        RecordState::Open,
        "Azure's last word was Fired: the incident is reopened (ITSM calls {calls:?})"
    );
}
