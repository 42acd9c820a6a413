//! Review 23: attacks on the breaker and the pacer in the worker's path.
//! Each failed before its fix: each names a hole in the promises of issue 23.

use super::*;
use crate::domain::delivery::breaker::Gate;
use crate::domain::delivery::{Received, WorkerPolicy};

/// Notification `seq` of `alert` on its first receive, as a batch holds it.
fn item(alert: &Alert, seq: u64) -> Result<Received, String> {
    Ok(received(alert, seq, 1))
}

/// "While the ITSM is down (its breaker open), no role calls it except one
/// probe per interval": a batch reads the breaker once, when it starts.
/// Once another container has opened the breaker, every batch already
/// under way still calls the ITSM with its next message (one call per
/// in-flight container; with pacing a batch of 10 can last 100 s).
#[tokio::test]
async fn a_batch_under_way_calls_the_itsm_after_another_container_opened_the_breaker() {
    let r = rig();
    let (one, two) = (worker(&r), worker(&r));
    let policy = WorkerPolicy::default();
    let mut alerts = Vec::new();
    // Queued behind a first failure, the ITSM back at once.
    r.itsm.down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        let (a, body) = alert(&format!("a{i}"), MonitorCondition::Fired);
        r.delivery.accept(&a, &body).await.unwrap();
        alerts.push(a);
    }
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(31, Ordering::SeqCst);
    // Container one starts its batch while the breaker is due: its first
    // message is the probe and goes through, closing the breaker.
    let mut run = one.batch(&policy, false).await;
    assert!(matches!(
        run.next(&item(&alerts[0], 1)).await,
        Fate::Delivered(_)
    ));
    // The ITSM goes down; container two sees it and opens the breaker.
    r.itsm.down.store(true, Ordering::SeqCst);
    two.deliver_batch(&[item(&alerts[1], 1)], &policy).await;
    assert!(matches!(two.breaker().gate(true).await, Gate::Open { .. }));
    let before = r.itsm_calls();
    // Container one goes on with its batch.
    let fate = run.next(&item(&alerts[2], 1)).await;
    run.finish().await;
    assert_eq!(
        r.itsm_calls(),
        before,
        "a call made while the breaker was open and the probe not due: {fate:?}"
    );
}

// The review's `a_paced_attempt_outlives_its_claims_lease` (a paced
// attempt's waits not counted against the deadline) is answered by the
// start-up check that counts them: see
// `config::delivery::tests::a_paced_attempt_must_still_fit_the_workers_deadline`,
// and the worker's retry policy, which bootstrap gives the same room.

/// "No role calls it except one probe per probe interval." The worker's
/// probe is its first message's whole attempt, and the worker's state
/// machine retries a transient failure within WORKER_DEADLINE_MS: against
/// an ITSM that fails fast (a 503 from its load balancer), one probe is a
/// handful of calls (here 8 s deadline, 1 s timeout, 2 requests: 6 calls;
/// with the defaults, 20 s and 3 s, about 6). The domain tests and the
/// simulation hide this with a zero deadline. (Real time: ~3 s.)
#[tokio::test]
async fn a_workers_probe_against_a_down_itsm_is_several_calls() {
    let r = rig();
    let t = r.now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        retry: RetryPolicy::new(Duration::from_secs(8), Duration::from_secs(1), 2),
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
    let w = Delivery::new(
        bridge(),
        bridge(),
        r.queue.clone(),
        breaker(&r.store, &clock),
        clock.clone(),
    );
    r.itsm.down.store(true, Ordering::SeqCst);
    let (a, body) = alert("probe", MonitorCondition::Fired);
    assert!(queued(&r.delivery.accept(&a, &body).await).is_some());
    r.now.fetch_add(30, Ordering::SeqCst);
    let before = r.itsm_calls();
    let fates = w
        .deliver_batch(&[item(&a, 1)], &WorkerPolicy::default())
        .await;
    assert_eq!(
        r.itsm_calls() - before,
        1,
        "one probe, {} ITSM calls: {fates:?}",
        r.itsm_calls() - before
    );
}

/// An ITSM (or a proxy before it) answering 429 with this `Retry-After`.
struct Throttling(Duration);

impl Throttling {
    fn answer(&self) -> ItsmError {
        ItsmError::Throttled {
            message: "HTTP 429".into(),
            retry_after: Some(self.0),
        }
    }
}

#[async_trait]
impl ItsmClient for Throttling {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        Err(self.answer())
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        Err(self.answer())
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        Err(self.answer())
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Err(self.answer())
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Err(self.answer())
    }
}

/// "Retry-After values huge": the adapters parse `Retry-After` as any u64
/// of seconds (itsm_http::failure), and the retry rule adds it to the
/// elapsed time with `+` (`elapsed + wait + attempt`), which panics on
/// overflow. A 429 with `Retry-After: 18446744073709551615` makes the
/// webhook's inline attempt panic while it holds the alert's claim: no
/// 202, no queuing; Azure's retries panic the same way. In the worker the
/// same panic fails the whole batch on every receive, until SQS's redrive
/// moves the message to the dead-letter queue unseen by the record (its
/// later notifications then go past it).
#[tokio::test]
async fn a_retry_after_of_u64_max_panics_the_inline_attempt_instead_of_queuing() {
    let r = rig();
    let t = r.now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let itsm: Arc<dyn ItsmClient> = Arc::new(Throttling(Duration::from_secs(u64::MAX)));
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || {
        Bridge::new(
            itsm.clone(),
            r.store.clone(),
            settings.clone(),
            clock.clone(),
        )
    };
    let d = Arc::new(Delivery::new(
        bridge(),
        bridge(),
        r.queue.clone(),
        breaker(&r.store, &clock),
        clock.clone(),
    ));
    let (a, body) = alert("huge", MonitorCondition::Fired);
    let task = {
        let d = d.clone();
        tokio::spawn(async move { d.accept(&a, &body).await })
    };
    let answer = task.await;
    assert!(
        matches!(&answer, Ok(Ok(Accepted::Queued { .. }))),
        "a 429 must queue the notification (202 to Azure): {:?}",
        answer.as_ref().map_err(|e| e.to_string())
    );
}
