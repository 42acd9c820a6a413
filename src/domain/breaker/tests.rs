//! The breaker's states and transitions, with the clock a port and the
//! memory store shared by several handles (as containers share DynamoDB).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use async_trait::async_trait;

use super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::correlation::IncidentRef;
use crate::domain::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{Intake, IntakeError, ItsmClient, ResolveOutcome};

const T0: i64 = 1_750_000_000;

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
        let policy = BreakerPolicy {
            probe_secs: 60,
            probe_max_secs: 240,
            view_secs: 5,
        };
        Breaker::new(self.store.clone(), "servicenow", policy, self.clock.clone())
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

// ---- review23: attacks on the breaker's promise that it never stays open
// (nor keeps the queue's consumer paused) once the ITSM is up.

/// The memory store whose breaker item can stop being readable (a
/// malformed item, a read the table refuses) while writes still work.
struct Unreadable {
    inner: Arc<MemoryStore>,
    fail_reads: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl BreakerStore for Unreadable {
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "breaker item has no valid probing_until".into(),
            ));
        }
        self.inner.breaker(name).await
    }
    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.inner.put_breaker(state, expected).await
    }
}

/// The module's rule is "a breaker that cannot be read is taken as
/// closed": the worker and the webhook call. But the round, which alone
/// resumes the consumer it paused, does nothing at all when it cannot read
/// the breaker: the worker's event source mapping stays paused for as long
/// as the item stays unreadable, and the backlog never flows although the
/// ITSM is up and every other role treats the breaker as closed.
#[tokio::test]
async fn a_breaker_item_that_cannot_be_read_leaves_the_paused_consumer_paused_for_ever() {
    let rig = rig();
    let store = Arc::new(Unreadable {
        inner: rig.store.clone(),
        fail_reads: Default::default(),
    });
    let policy = BreakerPolicy {
        probe_secs: 60,
        probe_max_secs: 240,
        view_secs: 5,
    };
    let b = Breaker::new(store.clone(), "servicenow", policy, rig.clock.clone());
    let (itsm, mapping) = (Probe::default(), Mapping::default());
    itsm.down.store(true, Ordering::SeqCst);
    b.failed(&down()).await;
    let r = b.round(&itsm, Some(&mapping)).await;
    assert_eq!(r.intake_paused, Some(true), "paused while down");
    // The ITSM comes back; the breaker item becomes unreadable.
    itsm.down.store(false, Ordering::SeqCst);
    store.fail_reads.store(true, Ordering::SeqCst);
    assert_eq!(
        b.gate(true).await,
        Gate::Closed,
        "every other role takes it as closed and would call"
    );
    for s in (60..3600).step_by(60) {
        rig.at(T0 + s);
        b.round(&itsm, Some(&mapping)).await;
    }
    assert!(
        !mapping.paused.load(Ordering::SeqCst),
        "an hour of rounds with the ITSM up and the breaker taken as closed: \
         the worker's event source mapping is still paused"
    );
}

/// One container whose clock has stepped a day ahead (then back) opens the
/// breaker: its `next_probe` is a day in everyone else's future. No role
/// probes before then, the round keeps the consumer paused: the breaker
/// stays open a day after the ITSM is back. Nothing bounds a stored probe
/// time by the policy (`BREAKER_PROBE_MAX_SECS` is at most an hour).
#[tokio::test]
async fn a_container_whose_clock_stepped_ahead_keeps_the_breaker_open_long_after_the_itsm_is_back()
{
    let rig = rig();
    let ahead_clock: Clock = {
        let t = rig.now.clone();
        Arc::new(move || t.load(Ordering::SeqCst) + 86_400)
    };
    let policy = BreakerPolicy {
        probe_secs: 60,
        probe_max_secs: 240,
        view_secs: 5,
    };
    let ahead = Breaker::new(rig.store.clone(), "servicenow", policy, ahead_clock);
    ahead.failed(&down()).await;
    let (b, itsm, mapping) = (rig.handle(), Probe::default(), Mapping::default());
    // The ITSM is up all along after that one blip; rounds every minute.
    let mut recovered_at = None;
    for s in (0..7200).step_by(60) {
        rig.at(T0 + s);
        let r = b.round(&itsm, Some(&mapping)).await;
        if r.outcome == ProbeOutcome::Recovered || r.outcome == ProbeOutcome::Up {
            recovered_at = Some(s);
            break;
        }
    }
    assert!(
        recovered_at.is_some_and(|s| s <= policy.probe_max_secs + 60),
        "two hours of rounds with the ITSM up: no probe, consumer paused ({:?}, {} ITSM calls)",
        b.gate(true).await,
        itsm.calls.load(Ordering::SeqCst)
    );
}

/// The same with the probe's lease: a container a day ahead takes the due
/// probe (and dies, or its clock is corrected): `probing_until` is a day
/// away for everyone else, and nobody probes.
#[tokio::test]
async fn a_probe_taken_by_a_container_whose_clock_stepped_ahead_blocks_every_probe_for_a_day() {
    let rig = rig();
    let b = rig.handle();
    b.failed(&down()).await;
    let ahead_clock: Clock = {
        let t = rig.now.clone();
        Arc::new(move || t.load(Ordering::SeqCst) + 86_400)
    };
    let ahead = Breaker::new(rig.store.clone(), "servicenow", *b.policy(), ahead_clock);
    assert!(ahead.take_probe().await, "due in its view");
    let (itsm, mapping) = (Probe::default(), Mapping::default());
    let mut probed = false;
    for s in (60..7200).step_by(60) {
        rig.at(T0 + s);
        b.round(&itsm, Some(&mapping)).await;
        probed |= itsm.calls.load(Ordering::SeqCst) > 0;
    }
    assert!(
        probed && b.gate(true).await == Gate::Closed,
        "two hours with the ITSM up and no probe made: {:?}",
        b.gate(true).await
    );
}

/// A 429 with `Retry-After: 86400` (or any figure above the policy's most)
/// holds every role's calls for a day, even when the ITSM answers again a
/// minute later: the next probe is not before then, and the worker's
/// held messages are hidden 12 hours. The worker's own backoff caps
/// `Retry-After` at `WORKER_BACKOFF_MAX_SECS`; the breaker caps it at a day,
/// not at `BREAKER_PROBE_MAX_SECS` (at most an hour by configuration).
#[tokio::test]
async fn a_huge_retry_after_holds_the_breaker_open_far_past_the_longest_probe_interval() {
    let rig = rig();
    let (b, itsm, mapping) = (rig.handle(), Probe::default(), Mapping::default());
    b.failed(&ItsmError::Throttled {
        message: "HTTP 429".into(),
        retry_after: Some(Duration::from_secs(86_400)),
    })
    .await;
    let mut back_at = None;
    for s in (60..7200).step_by(60) {
        rig.at(T0 + s);
        let r = b.round(&itsm, Some(&mapping)).await;
        if r.outcome == ProbeOutcome::Recovered {
            back_at = Some(s);
            break;
        }
    }
    assert!(
        back_at.is_some_and(|s| s <= 3600),
        "the ITSM up from the first minute, two hours of rounds: still {:?}",
        b.gate(true).await
    );
}

/// A 429 storm with `Retry-After: 0` (or 1): each failed probe schedules
/// the next one a second later, so callers due every second (the webhook
/// takes a due probe with every event) probe once a second instead of once
/// per `BREAKER_PROBE_SECS`, and the doubling never happens: an hour costs
/// thousands of ITSM calls where the promise is one per probe interval.
#[tokio::test]
async fn a_429_storm_with_retry_after_zero_probes_every_second_not_every_probe_interval() {
    let rig = rig();
    let (webhook, other) = (rig.handle(), rig.handle());
    let storm = ItsmError::Throttled {
        message: "HTTP 429".into(),
        retry_after: Some(Duration::ZERO),
    };
    webhook.failed(&storm).await;
    let mut calls = 0;
    for s in 0..3600 {
        rig.at(T0 + s);
        for h in [&webhook, &other] {
            if h.gate(true).await == Gate::ProbeDue && h.take_probe().await {
                calls += 1;
                h.failed(&storm).await;
            }
        }
    }
    assert!(
        calls <= 3600 / 60 + 1,
        "{calls} ITSM calls in an hour of 429s; one probe per 60 s interval would be 60"
    );
}

/// A `Retry-After` beyond i64::MAX seconds (the adapters accept any u64)
/// wraps negative in `tripped` (`as i64`) and is clamped up to 1 s: the
/// "longest" wait the ITSM asked for becomes a probe a second later.
#[tokio::test]
async fn a_retry_after_beyond_i64_wraps_into_a_probe_one_second_later() {
    let rig = rig();
    let b = rig.handle();
    b.failed(&ItsmError::Throttled {
        message: "HTTP 429".into(),
        retry_after: Some(Duration::from_secs(u64::MAX)),
    })
    .await;
    let until = match b.gate(true).await {
        Gate::Open { until, .. } => until,
        other => panic!("{other:?}"),
    };
    assert!(
        until - T0 >= 60,
        "the ITSM asked for the longest wait; the next probe is {} s away",
        until - T0
    );
}
