//! The breaker's states and transitions, with the clock a port and the
//! memory store shared by several handles (as containers share DynamoDB).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use async_trait::async_trait;

use super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{Intake, IntakeError, ItsmClient, ResolveOutcome};

const T0: i64 = 1_750_000_000;

/// Probes a minute apart, doubling to four; views trusted 5 s.
const POLICY: BreakerPolicy = BreakerPolicy {
    probe_secs: 60,
    probe_max_secs: 240,
    view_secs: 5,
};

struct Rig {
    store: Arc<MemoryStore>,
    now: Arc<AtomicI64>,
    clock: Clock,
}

fn rig() -> Rig {
    let now = Arc::new(AtomicI64::new(T0));
    let t = now.clone();
    Rig {
        store: Arc::new(MemoryStore::new()),
        now,
        clock: Arc::new(move || t.load(Ordering::SeqCst)),
    }
}

impl Rig {
    /// Another container's handle on the same breaker.
    fn handle(&self) -> Breaker {
        Breaker::new(self.store.clone(), "servicenow", POLICY, self.clock.clone())
    }
    fn at(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }
}

fn down() -> ItsmError {
    ItsmError::Unavailable("HTTP 503".into())
}

#[tokio::test]
async fn an_unwritten_breaker_is_closed() {
    let rig = rig();
    assert_eq!(rig.handle().gate(true).await, Gate::Closed);
}

#[tokio::test]
async fn the_first_transient_failure_opens_it_for_everyone_until_the_next_probe() {
    let rig = rig();
    let (webhook, worker) = (rig.handle(), rig.handle());
    webhook.failed(&down()).await;
    let gate = worker.gate(true).await;
    assert_eq!(
        gate,
        Gate::Open {
            until: T0 + 60,
            why: down().to_string()
        }
    );
    rig.at(T0 + 59);
    assert!(matches!(worker.gate(true).await, Gate::Open { .. }));
    rig.at(T0 + 60);
    assert_eq!(worker.gate(true).await, Gate::ProbeDue);
}

#[tokio::test]
async fn a_refusal_is_not_an_outage() {
    let rig = rig();
    let b = rig.handle();
    b.failed(&ItsmError::Rejected {
        status: 403,
        message: "no rights".into(),
    })
    .await;
    assert_eq!(b.gate(true).await, Gate::Closed);
}

#[tokio::test]
async fn unanswered_and_throttled_are_outages_and_retry_after_sets_the_probe() {
    let rig = rig();
    let b = rig.handle();
    b.failed(&ItsmError::Unanswered("timed out".into())).await;
    assert!(matches!(b.gate(true).await, Gate::Open { until, .. } if until == T0 + 60));
    let closed = rig.handle();
    rig.store
        .put_breaker(
            &b.state(true).await.unwrap().recovered(),
            Some(b.state(true).await.unwrap().version),
        )
        .await
        .unwrap();
    closed
        .failed(&ItsmError::Throttled {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(7)),
        })
        .await;
    assert!(matches!(closed.gate(true).await, Gate::Open { until, .. } if until == T0 + 7));
}

#[tokio::test]
async fn only_one_caller_takes_a_due_probe() {
    let rig = rig();
    let (a, b) = (rig.handle(), rig.handle());
    a.failed(&down()).await;
    rig.at(T0 + 60);
    assert!(a.take_probe().await);
    assert!(
        !b.take_probe().await,
        "a second prober while the first holds it"
    );
    assert!(matches!(b.gate(true).await, Gate::Open { .. }));
    // A prober that dies: its lease runs out and the probe is due again.
    rig.at(T0 + 60 + PROBE_LEASE_SECS);
    assert!(b.take_probe().await);
}

#[tokio::test]
async fn a_probe_that_succeeds_closes_it_and_one_that_fails_doubles_the_interval_up_to_the_most() {
    let rig = rig();
    let b = rig.handle();
    b.failed(&down()).await;
    let mut t = T0;
    for expected in [120, 240, 240] {
        t = b.state(true).await.unwrap().next_probe;
        rig.at(t);
        assert!(b.take_probe().await);
        b.failed(&down()).await;
        assert!(
            matches!(b.gate(true).await, Gate::Open { until, .. } if until == t + expected),
            "after a failed probe at {t}, the next in {expected} s"
        );
    }
    rig.at(b.state(true).await.unwrap().next_probe);
    assert!(b.take_probe().await);
    b.succeeded().await;
    assert_eq!(rig.handle().gate(true).await, Gate::Closed);
    assert!(t > T0);
    // The next outage starts from the first interval again.
    b.failed(&down()).await;
    let now = (rig.clock)();
    assert!(matches!(b.gate(true).await, Gate::Open { until, .. } if until == now + 60));
}

#[tokio::test]
async fn a_failure_while_open_and_not_due_keeps_the_probe_time() {
    let rig = rig();
    let (a, b) = (rig.handle(), rig.handle());
    a.failed(&down()).await;
    rig.at(T0 + 30);
    // A container whose view was stale called and failed too.
    b.failed(&down()).await;
    assert!(matches!(a.gate(true).await, Gate::Open { until, .. } if until == T0 + 60));
}

#[tokio::test]
async fn the_webhooks_view_is_cached_a_few_seconds_and_no_older() {
    let rig = rig();
    let (webhook, worker) = (rig.handle(), rig.handle());
    assert_eq!(webhook.gate(false).await, Gate::Closed);
    worker.failed(&down()).await;
    assert_eq!(webhook.gate(false).await, Gate::Closed, "within its view");
    rig.at(T0 + 5);
    assert!(matches!(webhook.gate(false).await, Gate::Open { .. }));
    // A clock stepped back does not make a view live for ever.
    rig.at(T0 - 100);
    worker.succeeded().await;
    rig.store
        .put_breaker(
            &worker.state(true).await.unwrap().recovered(),
            Some(worker.state(true).await.unwrap().version),
        )
        .await
        .unwrap();
    assert_eq!(webhook.gate(false).await, Gate::Closed);
}

/// An ITSM whose `find` (the probe) is up or down, counting calls.
#[derive(Default)]
struct Probe {
    down: std::sync::atomic::AtomicBool,
    calls: AtomicU32,
}

#[async_trait]
impl ItsmClient for Probe {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        unreachable!("a probe only reads")
    }
    async fn find(&self, key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        assert_eq!(key, PROBE_KEY);
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(down())
        } else {
            Ok(None)
        }
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        unreachable!("a probe only reads")
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        unreachable!("a probe only reads")
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        unreachable!("a probe only reads")
    }
}

#[derive(Default)]
struct Mapping {
    paused: std::sync::atomic::AtomicBool,
    changes: AtomicU32,
}

#[async_trait]
impl Intake for Mapping {
    async fn paused(&self) -> Result<bool, IntakeError> {
        Ok(self.paused.load(Ordering::SeqCst))
    }
    async fn pause(&self) -> Result<(), IntakeError> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn resume(&self) -> Result<(), IntakeError> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn rounds_pause_the_consumer_probe_once_per_interval_and_resume_on_recovery() {
    let rig = rig();
    let (b, itsm, mapping) = (rig.handle(), Probe::default(), Mapping::default());
    // Up: a round neither probes nor pauses.
    let r = b.round(&itsm, Some(&mapping)).await;
    assert_eq!(r.outcome, ProbeOutcome::Up);
    assert_eq!(
        (itsm.calls.load(Ordering::SeqCst), r.intake_paused),
        (0, Some(false))
    );

    itsm.down.store(true, Ordering::SeqCst);
    b.failed(&down()).await;
    // Rounds every 20 s for ten minutes of outage: one probe per interval.
    for s in (0..600).step_by(20) {
        rig.at(T0 + s);
        let r = b.round(&itsm, Some(&mapping)).await;
        assert_eq!(r.intake_paused, Some(true));
        assert_eq!(r.down_since, T0);
    }
    // Probes due at +60, +180, +420 (60, 120, 240 s apart).
    assert_eq!(itsm.calls.load(Ordering::SeqCst), 3);
    assert_eq!(mapping.changes.load(Ordering::SeqCst), 1, "paused once");

    itsm.down.store(false, Ordering::SeqCst);
    let due = b.state(true).await.unwrap().next_probe;
    rig.at(due);
    let r = b.round(&itsm, Some(&mapping)).await;
    assert_eq!(r.outcome, ProbeOutcome::Recovered);
    assert_eq!(r.intake_paused, Some(false));
    assert_eq!(b.gate(true).await, Gate::Closed);
}

#[tokio::test]
async fn a_round_resumes_a_consumer_left_paused_while_the_itsm_is_up() {
    let rig = rig();
    let (b, itsm, mapping) = (rig.handle(), Probe::default(), Mapping::default());
    mapping.paused.store(true, Ordering::SeqCst);
    let r = b.round(&itsm, Some(&mapping)).await;
    assert_eq!(r.intake_paused, Some(false));
    assert_eq!(itsm.calls.load(Ordering::SeqCst), 0);
}

mod stuck;
