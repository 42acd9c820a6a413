//! The state machine, row by row of the table at the top of
//! `state_machine.rs`, against the memory store and a scripted ITSM: no
//! HTTP. The wire formats are tested with each ITSM adapter.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::mapping::Resolution;
use crate::domain::retry::RetryPolicy;

const ID: &str = "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a1";
const FIRST: &str = "2025-04-15T18:17:12Z";
const AGAIN: &str = "2025-04-15T19:00:00Z";
const T0: i64 = 1_750_000_000;

/// An ITSM that answers from a script, then with success, and notes every call.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<String>>,
    creates: Mutex<VecDeque<Result<IncidentRef, ItsmError>>>,
    finds: Mutex<VecDeque<Result<Option<IncidentRef>, ItsmError>>>,
    resolves: Mutex<VecDeque<Result<ResolveOutcome, ItsmError>>>,
    /// Held by a create while it runs, so tests can race deliveries.
    create_delay: Option<Duration>,
}

fn inc(n: u32) -> IncidentRef {
    IncidentRef {
        id: format!("sys{n}"),
        number: format!("INC{n:07}"),
    }
}

fn down() -> ItsmError {
    ItsmError::Unavailable("503".into())
}

impl Scripted {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn note(&self, call: String) -> usize {
        let mut calls = self.calls.lock().unwrap();
        calls.push(call);
        calls.iter().filter(|c| c.starts_with("create")).count()
    }
}

#[async_trait]
impl ItsmClient for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        let n = self.note(format!("create {}", draft.correlation_key));
        if let Some(d) = self.create_delay {
            tokio::time::sleep(d).await;
        }
        let scripted = self.creates.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| Ok(inc(n as u32)))
    }
    async fn find(&self, key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.note(format!("find {key}"));
        let scripted = self.finds.lock().unwrap().pop_front();
        scripted.unwrap_or(Ok(None))
    }
    async fn resolve(&self, i: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.note(format!("resolve {}", i.number));
        let scripted = self.resolves.lock().unwrap().pop_front();
        scripted.unwrap_or(Ok(ResolveOutcome::Resolved))
    }
    async fn reopen(&self, i: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        assert!(note.contains(AGAIN), "{note}");
        self.note(format!("reopen {}", i.number));
        Ok(())
    }
    async fn note(&self, i: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        assert!(note.contains(AGAIN), "{note}");
        self.note(format!("note {}", i.number));
        Ok(())
    }
}

struct Rig {
    bridge: Bridge,
    store: Arc<MemoryStore>,
    itsm: Arc<Scripted>,
    now: Arc<AtomicI64>,
}

fn rig_with(itsm: Scripted, refire: RefirePolicy) -> Rig {
    let store = Arc::new(MemoryStore::new());
    let itsm = Arc::new(itsm);
    let now = Arc::new(AtomicI64::new(T0));
    let clock_now = now.clone();
    let settings = Settings {
        refire,
        // One attempt per call, no sleeping: retries have tests of their own.
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = Bridge::new(
        itsm.clone(),
        store.clone(),
        settings,
        Arc::new(move || clock_now.load(Ordering::SeqCst)),
    );
    Rig {
        bridge,
        store,
        itsm,
        now,
    }
}

fn rig() -> Rig {
    rig_with(Scripted::default(), RefirePolicy::Ignore)
}

fn alert(condition: MonitorCondition, fired_at: &str) -> Alert {
    Alert {
        alert_rule: Some("cpu-high".into()),
        fired_at: Some(fired_at.into()),
        ..Alert::new(ID, condition)
    }
}

fn fired() -> Alert {
    alert(MonitorCondition::Fired, FIRST)
}

fn resolved() -> Alert {
    alert(MonitorCondition::Resolved, FIRST)
}

/// Lease of a seeded claim.
#[derive(Debug, Clone, Copy)]
enum Lease {
    Live,
    Expired,
}

impl Rig {
    async fn seed(&self, state: RecordState, lease: Lease, incident: Option<IncidentRef>) {
        let t = self.now.load(Ordering::SeqCst);
        let record = CorrelationRecord {
            alert_id: ID.into(),
            correlation_key: correlation_key(ID),
            itsm: "scripted".into(),
            state,
            incident,
            fired_at: Some(FIRST.into()),
            resolved_at: None,
            lease_until: match lease {
                Lease::Live => t + 30,
                Lease::Expired => t - 1,
            },
            updated_at: t - 100,
            expires_at: t + 3600,
            version: 3,
            queued_seq: 0,
            delivered_seq: 0,
            queued_at: 0,
            queued_digest: None,
        };
        self.store.put(&record, None, t).await.unwrap();
    }

    async fn record(&self) -> CorrelationRecord {
        let t = self.now.load(Ordering::SeqCst);
        self.store.get(ID, t).await.unwrap().expect("a record")
    }

    async fn outcome(&self, alert: &Alert) -> Result<Outcome, ProcessError> {
        self.bridge.process(alert).await.map(|p| p.outcome)
    }
}

#[tokio::test]
async fn row_none() {
    // Fired: claim, create, record Open.
    let r = rig();
    let done = r.bridge.process(&fired()).await.unwrap();
    assert_eq!(
        (done.outcome, done.incident, done.itsm_calls),
        (Outcome::Created, Some(inc(1)), 1)
    );
    let rec = r.record().await;
    assert_eq!((rec.state, rec.incident), (RecordState::Open, Some(inc(1))));
    assert_eq!(rec.correlation_key, correlation_key(ID));
    assert_eq!(r.itsm.calls(), [format!("create {}", correlation_key(ID))]);

    // Resolved: remembered, nothing sent.
    let r = rig();
    assert_eq!(
        r.outcome(&resolved()).await,
        Ok(Outcome::ResolvedWithoutIncident)
    );
    assert_eq!(r.record().await.state, RecordState::ResolvedWithoutIncident);
    assert!(r.itsm.calls().is_empty());
}

#[tokio::test]
async fn row_claimed_with_a_live_lease() {
    for alert in [fired(), resolved()] {
        let r = rig();
        r.seed(RecordState::Claimed, Lease::Live, None).await;
        assert_eq!(
            r.outcome(&alert).await,
            Err(ProcessError::InProgress),
            "{:?}",
            alert.condition
        );
        assert!(r.itsm.calls().is_empty());
        assert_eq!(r.record().await.version, 3, "nothing written");
    }
}

#[tokio::test]
async fn row_claimed_with_an_expired_lease() {
    let key = correlation_key(ID);
    // (condition, what find answers, outcome, final state, ITSM calls)
    type Case = (
        Alert,
        Option<IncidentRef>,
        Outcome,
        RecordState,
        Vec<String>,
    );
    let cases: [Case; 4] = [
        (
            fired(),
            Some(inc(7)),
            Outcome::Recovered,
            RecordState::Open,
            vec![format!("find {key}")],
        ),
        (
            fired(),
            None,
            Outcome::Created,
            RecordState::Open,
            vec![format!("find {key}"), format!("create {key}")],
        ),
        (
            resolved(),
            Some(inc(7)),
            Outcome::Resolved,
            RecordState::Resolved,
            vec![format!("find {key}"), "resolve INC0000007".into()],
        ),
        (
            resolved(),
            None,
            Outcome::ResolvedWithoutIncident,
            RecordState::ResolvedWithoutIncident,
            vec![format!("find {key}")],
        ),
    ];
    for (alert, found, outcome, state, calls) in cases {
        let itsm = Scripted::default();
        itsm.finds.lock().unwrap().push_back(Ok(found.clone()));
        let r = rig_with(itsm, RefirePolicy::Ignore);
        r.seed(RecordState::Claimed, Lease::Expired, None).await;
        assert_eq!(r.outcome(&alert).await, Ok(outcome), "{found:?}");
        assert_eq!(r.record().await.state, state, "{outcome:?}");
        assert_eq!(r.itsm.calls(), calls, "{outcome:?}");
    }
}

#[tokio::test]
async fn row_open() {
    // Fired: a duplicate, nothing sent.
    let r = rig();
    r.seed(RecordState::Open, Lease::Expired, Some(inc(4)))
        .await;
    let done = r.bridge.process(&fired()).await.unwrap();
    assert_eq!(
        (done.outcome, done.incident),
        (Outcome::Duplicate, Some(inc(4)))
    );
    assert!(r.itsm.calls().is_empty());

    // Resolved: resolve, record what the ITSM said.
    for (answer, outcome, state) in [
        (
            ResolveOutcome::Resolved,
            Outcome::Resolved,
            RecordState::Resolved,
        ),
        (
            ResolveOutcome::AlreadyClosed,
            Outcome::ClosedInItsm,
            RecordState::Resolved,
        ),
        (
            ResolveOutcome::NotFound,
            Outcome::IncidentGone,
            RecordState::IncidentGone,
        ),
    ] {
        let itsm = Scripted::default();
        itsm.resolves.lock().unwrap().push_back(Ok(answer));
        let r = rig_with(itsm, RefirePolicy::Ignore);
        r.seed(RecordState::Open, Lease::Expired, Some(inc(4)))
            .await;
        assert_eq!(r.outcome(&resolved()).await, Ok(outcome));
        let rec = r.record().await;
        assert_eq!((rec.state, rec.incident), (state, Some(inc(4))));
        assert!(rec.resolved_at.is_some());
        assert_eq!(r.itsm.calls(), ["resolve INC0000004"]);
    }
}

#[tokio::test]
async fn row_resolved_gone_or_without_incident() {
    for state in [
        RecordState::Resolved,
        RecordState::IncidentGone,
        RecordState::ResolvedWithoutIncident,
    ] {
        for (alert, outcome) in [
            (fired(), Outcome::StaleFired),
            (resolved(), Outcome::AlreadyResolved),
        ] {
            let r = rig();
            r.seed(state, Lease::Expired, Some(inc(5))).await;
            assert_eq!(r.outcome(&alert).await, Ok(outcome), "{state:?}");
            assert!(r.itsm.calls().is_empty());
            assert_eq!(r.record().await.version, 3, "nothing written");
        }
    }
}

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
