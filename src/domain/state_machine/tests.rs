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
use crate::domain::incident::mapping::Resolution;
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

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
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
            queue: Default::default(),
            look_until: 0,
            azure: Default::default(),
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

// Failures, retries, leases, concurrency and refires: beyond the rows.
mod scenarios;
// How long records live.
mod expiry;
