//! The breaker never stays open, nor keeps the queue's consumer paused,
//! once the ITSM is up: the attacks an adversarial review made on that
//! promise (an unreadable item, clocks stepped ahead, huge, zero and
//! overflowing `Retry-After`s), each failing before its fix.

use super::*;

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
    let policy = POLICY;
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
    let policy = POLICY;
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
