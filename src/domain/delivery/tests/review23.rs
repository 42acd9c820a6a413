//! Review 23: attacks on the breaker and the pacer in the worker's path.
//! These fail on purpose: each names a hole in the promises of issue 23.

use std::sync::atomic::AtomicU32;

use super::*;
use crate::adapters::pacing::Paced;
use crate::domain::breaker::Gate;
use crate::domain::delivery::{Received, WorkerPolicy};

fn received(alert: &Alert, seq: u64) -> Result<Received, String> {
    Ok(Received {
        alert: alert.clone(),
        seq,
        group: correlation_key(&alert.alert_id),
        receives: 1,
    })
}

/// A worker container on the rig's store, queue and ITSM.
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
        run.next(&received(&alerts[0], 1)).await,
        Fate::Delivered(_)
    ));
    // The ITSM goes down; container two sees it and opens the breaker.
    r.itsm.down.store(true, Ordering::SeqCst);
    two.deliver_batch(&[received(&alerts[1], 1)], &policy).await;
    assert!(matches!(two.breaker().gate(true).await, Gate::Open { .. }));
    let before = r.itsm_calls();
    // Container one goes on with its batch.
    let fate = run.next(&received(&alerts[2], 1)).await;
    run.finish().await;
    assert_eq!(
        r.itsm_calls(),
        before,
        "a call made while the breaker was open and the probe not due: {fate:?}"
    );
}

/// An ITSM that fails its first `fail` calls with a 503, then answers.
#[derive(Default)]
struct Flaky {
    fail: AtomicU32,
    calls: AtomicU32,
}

impl Flaky {
    fn call(&self) -> Result<(), ItsmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.fail.load(Ordering::SeqCst);
        if left > 0 {
            self.fail.store(left - 1, Ordering::SeqCst);
            return Err(ItsmError::Unavailable("HTTP 503".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl ItsmClient for Flaky {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        self.call()?;
        Ok(IncidentRef {
            id: "sys1".into(),
            number: "INC1".into(),
        })
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.call().map(|()| None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.call().map(|()| ResolveOutcome::Resolved)
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call()
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call()
    }
}

/// "The paced drain never waits so long that a claim's lease runs out
/// mid-attempt." The configuration checks WORKER_DEADLINE_MS against
/// CLAIM_LEASE_SECS with each request taking ITSM_TIMEOUT_MS, but not the
/// pacer's wait before each request (up to 10 s at the least rate, 0.1 a
/// second per container, where 429s also bring any rate down to a tenth).
/// The retry rule lets a retry start while `elapsed + backoff + attempt`
/// fits the deadline, `attempt` counting no pacing; every request of that
/// retry then waits its slot. Here: lease 20 s, deadline 19 s, 2 requests
/// of 3 s (ServiceNow, basic auth); two 503s, then find and create, paced
/// 10 s apart: the attempt lasts ~30 s, the claim ran out 10 s before the
/// commit. (With the template's bounds, CLAIM_LEASE_SECS 31 and
/// WORKER_DEADLINE_MS 30000, BMC's 4 requests overrun by up to 40 s.)
/// Real time: ~30 s.
#[tokio::test]
async fn a_paced_attempt_outlives_its_claims_lease() {
    let lease_secs = 20;
    let itsm = Arc::new(Flaky::default());
    let store = Arc::new(MemoryStore::new());
    let clock: Clock = Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    });
    let settings = Settings {
        lease_secs,
        retry: RetryPolicy::new(
            Duration::from_millis(19_000),
            Duration::from_millis(3000),
            2,
        ),
        ..Settings::default()
    };
    let inline = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..settings.clone()
    };
    // The least rate a container may be given (ITSM_MAX_RPS 0.1).
    let paced: Arc<dyn ItsmClient> = Arc::new(Paced::new(itsm.clone(), 0.1));
    let d = Delivery::new(
        Bridge::new(itsm.clone(), store.clone(), inline, clock.clone()),
        Bridge::new(paced, store.clone(), settings, clock.clone()),
        Arc::new(Queue::default()),
        breaker(&store, &clock),
        clock.clone(),
    );
    // The inline create fails: queued; the worker will look first, then create.
    itsm.fail.store(1, Ordering::SeqCst);
    let (a, body) = alert("paced", MonitorCondition::Fired);
    assert!(queued(&d.accept(&a, &body).await).is_some());
    itsm.fail.store(2, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let fate = d
        .deliver_queued(&received(&a, 1).unwrap(), &WorkerPolicy::default())
        .await;
    let took = started.elapsed().as_secs();
    assert!(matches!(fate, Fate::Delivered(_)), "{fate:?}");
    assert!(
        took < lease_secs as u64,
        "one paced attempt took {took} s, its claim's lease is {lease_secs} s \
         ({} ITSM calls)",
        itsm.calls.load(Ordering::SeqCst)
    );
}

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
        .deliver_batch(&[received(&a, 1)], &WorkerPolicy::default())
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
