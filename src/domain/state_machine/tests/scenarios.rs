//! The state machine beyond its table's rows: ITSM failures and retries,
//! leases, concurrent deliveries and the refire policies.

use super::*;

#[tokio::test]
async fn an_itsm_failure_releases_the_claim_and_the_retry_looks_before_creating() {
    let itsm = Scripted::default();
    itsm.creates.lock().unwrap().push_back(Err(down()));
    let r = rig_with(itsm, RefirePolicy::Ignore);
    assert_eq!(r.outcome(&fired()).await, Err(ProcessError::Itsm(down())));
    let rec = r.record().await;
    assert_eq!((rec.state, rec.lease_until), (RecordState::Claimed, 0));
    // The retry needs no wait for the lease, and asks before creating.
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Created));
    let key = correlation_key(ID);
    assert_eq!(
        r.itsm.calls(),
        [
            format!("create {key}"),
            format!("find {key}"),
            format!("create {key}")
        ]
    );
}

#[tokio::test]
async fn a_failed_resolve_keeps_the_incident_open_for_the_retry() {
    let itsm = Scripted::default();
    itsm.resolves.lock().unwrap().push_back(Err(down()));
    let r = rig_with(itsm, RefirePolicy::Ignore);
    r.seed(RecordState::Open, Lease::Expired, Some(inc(4)))
        .await;
    assert_eq!(
        r.outcome(&resolved()).await,
        Err(ProcessError::Itsm(down()))
    );
    assert_eq!(r.record().await.state, RecordState::Open);
    assert_eq!(r.outcome(&resolved()).await, Ok(Outcome::Resolved));
}

#[tokio::test]
async fn transient_failures_are_retried_within_the_deadline() {
    let itsm = Scripted::default();
    itsm.creates
        .lock()
        .unwrap()
        .extend([Err(down()), Err(down())]);
    let store = Arc::new(MemoryStore::new());
    let itsm = Arc::new(itsm);
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::from_secs(5),
            attempt: Duration::from_millis(10),
            base: Duration::from_millis(1),
        },
        ..Settings::default()
    };
    let bridge = Bridge::new(itsm.clone(), store, settings, Arc::new(|| T0));
    let done = bridge.process(&fired()).await.unwrap();
    // Two failures, then a create; each retry looks first.
    assert_eq!((done.outcome, done.itsm_calls), (Outcome::Created, 3));
    let creates = itsm
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!((creates, itsm.calls().len()), (3, 5));
}

#[tokio::test]
async fn a_live_claim_makes_others_wait_and_an_expired_one_is_taken_over() {
    let r = rig();
    // An attempt that claimed and died before recording its incident.
    r.seed(RecordState::Claimed, Lease::Live, None).await;
    assert_eq!(r.outcome(&fired()).await, Err(ProcessError::InProgress));
    r.now.fetch_add(31, Ordering::SeqCst);
    r.itsm.finds.lock().unwrap().push_back(Ok(Some(inc(8))));
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Recovered));
    assert!(!r.itsm.calls().iter().any(|c| c.starts_with("create")));
    assert_eq!(r.record().await.incident, Some(inc(8)));
}

#[tokio::test]
async fn concurrent_deliveries_open_exactly_one_incident() {
    let itsm = Scripted {
        create_delay: Some(Duration::from_millis(50)),
        ..Scripted::default()
    };
    let r = rig_with(itsm, RefirePolicy::Ignore);
    let alert = fired();
    let outcomes = futures::future::join_all((0..16).map(|_| r.bridge.process(&alert))).await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(p) if p.outcome == Outcome::Created))
        .count();
    assert_eq!(created, 1);
    for o in &outcomes {
        assert!(
            matches!(
                o,
                Ok(Processed {
                    outcome: Outcome::Created | Outcome::Duplicate,
                    ..
                }) | Err(ProcessError::InProgress)
            ),
            "{o:?}"
        );
    }
    assert_eq!(r.itsm.calls().len(), 1, "one create, nothing else");
    // Those told to retry find the incident on their retry.
    assert_eq!(r.outcome(&alert).await, Ok(Outcome::Duplicate));
}

/// Another container whose clock runs a lease (and a second) ahead takes
/// the claim over while the first attempt's create is still on its way: its
/// search cannot see that create yet, and it must not make a second one.
#[tokio::test]
async fn a_clock_a_lease_ahead_waits_for_a_create_still_on_its_way() {
    let itsm = Scripted {
        create_delay: Some(Duration::from_millis(200)),
        ..Scripted::default()
    };
    let r = rig_with(itsm, RefirePolicy::Ignore);
    let ahead = {
        let now = r.now.clone();
        let lease = r.bridge.settings().lease_secs;
        Bridge::new(
            r.itsm.clone(),
            r.store.clone(),
            r.bridge.settings().clone(),
            Arc::new(move || now.load(Ordering::SeqCst) + lease + 1),
        )
    };
    let alert = fired();
    let (first, second) = futures::join!(r.bridge.process(&alert), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ahead.process(&alert).await
    });
    assert!(
        matches!(second, Err(ProcessError::Itsm(ItsmError::Unavailable(_)))),
        "the container ahead must wait for the search to catch up: {second:?}"
    );
    let creates = r
        .itsm
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(creates, 1, "{:?} then {first:?}", r.itsm.calls());
}

/// Fired and resolved once, under `policy`; then the same alert fires again.
async fn refired(policy: RefirePolicy) -> (Rig, Result<Outcome, ProcessError>) {
    let r = rig_with(Scripted::default(), policy);
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Created));
    assert_eq!(r.outcome(&resolved()).await, Ok(Outcome::Resolved));
    // A late delivery of the first firing is never a refire.
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::StaleFired));
    let again = r.outcome(&alert(MonitorCondition::Fired, AGAIN)).await;
    (r, again)
}

#[tokio::test]
async fn refire_policies() {
    let key = correlation_key(ID);
    let opened = [format!("create {key}"), "resolve INC0000001".to_string()];

    let (r, again) = refired(RefirePolicy::Ignore).await;
    assert_eq!(again, Ok(Outcome::StaleFired));
    assert_eq!(r.itsm.calls(), opened);

    let (r, again) = refired(RefirePolicy::Reopen).await;
    assert_eq!(again, Ok(Outcome::Reopened));
    assert_eq!(r.itsm.calls()[2..], ["reopen INC0000001"]);
    let rec = r.record().await;
    assert_eq!(
        (rec.state, rec.fired_at.as_deref()),
        (RecordState::Open, Some(AGAIN))
    );
    assert_eq!(rec.resolved_at, None);
    let again = alert(MonitorCondition::Fired, AGAIN);
    assert_eq!(r.outcome(&again).await, Ok(Outcome::Duplicate));
    let resolved_again = alert(MonitorCondition::Resolved, AGAIN);
    assert_eq!(r.outcome(&resolved_again).await, Ok(Outcome::Resolved));

    let (r, again) = refired(RefirePolicy::Note).await;
    assert_eq!(again, Ok(Outcome::Noted));
    assert_eq!(r.itsm.calls()[2..], ["note INC0000001"]);
    assert_eq!(r.record().await.state, RecordState::Resolved);
    let same = alert(MonitorCondition::Fired, AGAIN);
    assert_eq!(
        r.outcome(&same).await,
        Ok(Outcome::StaleFired),
        "the same firing notes once"
    );

    let (r, again) = refired(RefirePolicy::New).await;
    assert_eq!(again, Ok(Outcome::Created));
    let rec = r.record().await;
    let new_key = correlation_key(&format!("{ID}|{AGAIN}"));
    assert_ne!(new_key, key);
    assert_eq!(
        (rec.state, rec.correlation_key.as_str(), rec.incident),
        (RecordState::Open, new_key.as_str(), Some(inc(2)))
    );
    assert_eq!(r.itsm.calls()[2..], [format!("create {new_key}")]);
    let same = alert(MonitorCondition::Fired, AGAIN);
    assert_eq!(r.outcome(&same).await, Ok(Outcome::Duplicate));
}

#[tokio::test]
async fn a_refire_with_nothing_to_reopen_opens_a_new_incident() {
    let r = rig_with(Scripted::default(), RefirePolicy::Reopen);
    assert_eq!(
        r.outcome(&resolved()).await,
        Ok(Outcome::ResolvedWithoutIncident)
    );
    let again = alert(MonitorCondition::Fired, AGAIN);
    assert_eq!(r.outcome(&again).await, Ok(Outcome::Created));
    assert_eq!(r.record().await.state, RecordState::Open);
}

/// A person resolved the first firing's incident and the sync round closed
/// the alert in Azure (its record says so). The alert fires again: the
/// record that follows must not carry that mark, or the round would skip
/// closing the new firing when a person resolves its incident.
#[tokio::test]
async fn a_refire_forgets_what_azure_was_told_of_the_earlier_firing() {
    for policy in [RefirePolicy::Reopen, RefirePolicy::New] {
        let r = rig_with(Scripted::default(), policy);
        assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Created));
        assert_eq!(r.outcome(&resolved()).await, Ok(Outcome::Resolved));
        let t = r.now.load(Ordering::SeqCst);
        let mut told = r.record().await;
        let version = told.version;
        told.azure.sent = Some(crate::domain::correlation::AzureMark::Closed);
        told.version += 1;
        r.store.put(&told, Some(version), t).await.unwrap();
        let again = r.outcome(&alert(MonitorCondition::Fired, AGAIN)).await;
        assert!(
            matches!(again, Ok(Outcome::Reopened | Outcome::Created)),
            "{policy:?}: {again:?}"
        );
        let rec = r.record().await;
        assert_eq!(rec.state, RecordState::Open, "{policy:?}");
        assert_eq!(rec.azure.sent, None, "{policy:?}: the old firing's mark");
    }
}
