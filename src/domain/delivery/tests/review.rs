//! A review's findings in store and forward and the state machine, against
//! the memory store and the doubles beside: ignored so the branch stays
//! green; run them with `cargo test --lib delivery::tests::review -- --ignored`.

use super::*;
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
        delivery: Delivery::new(bridge(), bridge(), queue.clone(), 30, clock.clone()),
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
#[ignore = "review finding 3"]
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
