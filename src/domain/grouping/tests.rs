//! Grouping through the state machine, against an ITSM double that keeps
//! incidents, notes and resolves, goes down, and loses answers; the clock
//! moved by hand. The promise checked: one parent per group, each child
//! counted once, updates batched, the parent resolved once by policy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::alert::{Alert, MonitorCondition, Severity};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::incident::routing::Routing;
use crate::domain::outcome::Outcome;
use crate::domain::ports::{Clock, ItsmClient, ItsmError, ResolveOutcome};
use crate::domain::retry::RetryPolicy;
use crate::domain::settings::Settings;
use crate::domain::state_machine::Bridge;

mod children;
mod person;
mod review24;
mod review24b;
mod sim_findings;
mod storm;

#[derive(Default)]
pub(super) struct Itsm {
    /// Every incident created: key, reference, title, resolved.
    pub incidents: Mutex<Vec<(String, IncidentRef, String, bool)>>,
    pub notes: Mutex<Vec<(String, String)>>,
    pub resolves: Mutex<Vec<String>>,
    /// Priorities set: incident number, impact, urgency.
    pub priorities: Mutex<Vec<(String, u8, u8)>>,
    pub down: AtomicBool,
    /// The next create takes effect and its answer is lost.
    pub lose_create: AtomicBool,
    /// Child incidents (`children: incidents`): child key → parent number.
    pub children: Mutex<BTreeMap<String, String>>,
}

impl Itsm {
    pub fn parents(&self) -> Vec<String> {
        let incidents = self.incidents.lock().unwrap();
        incidents.iter().map(|(_, _, t, _)| t.clone()).collect()
    }

    fn up(&self) -> Result<(), ItsmError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(ItsmError::Unavailable("HTTP 503".into())),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl ItsmClient for Itsm {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        self.up()?;
        assert!(
            draft.group.is_none(),
            "a child reached the ITSM as an incident"
        );
        let mut incidents = self.incidents.lock().unwrap();
        let n = incidents.len() + 1;
        let incident = IncidentRef {
            id: format!("sys{n}"),
            number: format!("INC{n:07}"),
        };
        if let Some(parent) = &draft.parent {
            let mut children = self.children.lock().unwrap();
            let key = draft.correlation_key.clone();
            assert!(!children.contains_key(&key), "a second child incident");
            children.insert(key, parent.number.clone());
        }
        let entry = (
            draft.correlation_key.clone(),
            incident.clone(),
            draft.short_description.clone(),
            false,
        );
        incidents.push(entry);
        if self.lose_create.swap(false, Ordering::SeqCst) {
            return Err(ItsmError::Unanswered("timed out".into()));
        }
        Ok(incident)
    }

    async fn find(&self, key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.up()?;
        let incidents = self.incidents.lock().unwrap();
        let found = incidents.iter().find(|(k, ..)| k == key);
        Ok(found.map(|(_, i, ..)| i.clone()))
    }

    async fn resolve(&self, i: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.up()?;
        assert!(
            !i.id.starts_with("group:"),
            "a child reference reached the ITSM"
        );
        self.resolves.lock().unwrap().push(i.number.clone());
        let mut incidents = self.incidents.lock().unwrap();
        // ServiceNow's cascade: a parent resolved resolves its children.
        let children = self.children.lock().unwrap().clone();
        for (key, _, _, resolved) in incidents.iter_mut() {
            if children.get(key.as_str()) == Some(&i.number) {
                *resolved = true;
            }
        }
        let found = incidents.iter_mut().find(|(_, x, ..)| x == i);
        Ok(match found {
            Some((.., resolved)) if *resolved => ResolveOutcome::AlreadyClosed,
            Some((.., resolved)) => {
                *resolved = true;
                ResolveOutcome::Resolved
            }
            None => ResolveOutcome::NotFound,
        })
    }

    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.up()
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        self.up()?;
        let set = (i.number.clone(), impact, urgency);
        self.priorities.lock().unwrap().push(set);
        Ok(())
    }

    async fn note(&self, i: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.up()?;
        self.notes
            .lock()
            .unwrap()
            .push((i.number.clone(), note.to_string()));
        Ok(())
    }
}

pub(super) struct Rig {
    pub itsm: Arc<Itsm>,
    pub store: Arc<MemoryStore>,
    pub now: Arc<AtomicI64>,
    pub grouped: Arc<Grouped>,
    pub bridge: Bridge,
}

pub(super) fn rig(group: serde_json::Value) -> Rig {
    let itsm = Arc::new(Itsm::default());
    let store = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let rules = json!({"rules": [{"name": "vm-cpu", "match": {"alert_rule": "vm-cpu-*"},
                                  "set": {"assignment_group": "Compute"}, "group": group}]});
    let settings = Settings {
        routing: Routing::parse(&rules.to_string(), 3).unwrap(),
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let grouped = Arc::new(Grouped::new(
        itsm.clone(),
        store.clone(),
        clock.clone(),
        &settings,
    ));
    let bridge = Bridge::new(grouped.clone(), store.clone(), settings, clock);
    Rig {
        itsm,
        store,
        now,
        grouped,
        bridge,
    }
}

impl Rig {
    pub fn at(&self, t: i64) {
        self.now.store(1_800_000_000 + t, Ordering::SeqCst);
    }

    pub fn alert(&self, vm: usize, condition: MonitorCondition, severity: Severity) -> Alert {
        let mut a = Alert::new(
            format!("/subscriptions/s1/providers/Microsoft.AlertsManagement/alerts/{vm}"),
            condition,
        );
        a.alert_rule = Some("vm-cpu-high".into());
        a.severity = severity;
        a.fired_at = Some("2026-12-04T10:00:00Z".into());
        a.target_ids = vec![format!(
            "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/vm-{vm}"
        )];
        a
    }

    pub async fn fire(&self, vm: usize) -> Outcome {
        let a = self.alert(vm, MonitorCondition::Fired, Severity::Sev3);
        self.bridge.process(&a).await.expect("fired").outcome
    }

    pub async fn fire_as(&self, vm: usize, severity: Severity) -> Outcome {
        let a = self.alert(vm, MonitorCondition::Fired, severity);
        self.bridge.process(&a).await.expect("fired").outcome
    }

    pub async fn resolve(&self, vm: usize) -> Outcome {
        let a = self.alert(vm, MonitorCondition::Resolved, Severity::Sev3);
        self.bridge.process(&a).await.expect("resolved").outcome
    }
}

#[tokio::test]
async fn without_a_group_an_alert_opens_its_own_incident() {
    let r = rig(json!({"by": ["alert_rule"]}));
    let mut a = r.alert(1, MonitorCondition::Fired, Severity::Sev2);
    a.alert_rule = Some("disk-full".into());
    r.bridge.process(&a).await.unwrap();
    assert_eq!(r.itsm.incidents.lock().unwrap().len(), 1);
    let title = r.itsm.parents().pop().unwrap();
    assert!(title.starts_with("[Sev2] disk-full"), "{title}");
    assert_eq!(r.grouped.round().await.groups, 0);
}

#[tokio::test]
async fn the_window_and_the_age_decide_which_group_an_alert_joins() {
    let r = rig(json!({"by": ["alert_rule"], "window_secs": 600, "max_age_secs": 1500}));
    r.at(0);
    r.fire(1).await;
    r.at(600); // just inside the window of the last join (0)
    r.fire(2).await;
    r.at(1200); // just inside again (600)
    r.fire(3).await;
    r.at(1501); // inside the window, one past the age
    r.fire(4).await;
    r.at(2102); // the second group's window (from 1501) has passed by one
    r.fire(5).await;
    assert_eq!(r.itsm.parents().len(), 3, "{:?}", r.itsm.parents());
    let titles = r.itsm.parents();
    assert!(
        titles[0].starts_with("vm-cpu: 1 alerts in vm-cpu-high"),
        "{titles:?}"
    );
}

#[tokio::test]
async fn a_parent_whose_create_answer_was_lost_is_found_not_made_twice() {
    let r = rig(json!({"by": ["alert_rule"]}));
    r.itsm.lose_create.store(true, Ordering::SeqCst);
    r.at(0);
    assert_eq!(
        r.fire(1).await,
        Outcome::Created,
        "the join is durable: Azure hears 2xx"
    );
    r.at(61); // the claim's lease has passed
    r.fire(2).await;
    r.grouped.round().await;
    assert_eq!(r.itsm.incidents.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_first_alerts_on_two_containers_make_one_parent() {
    let r = rig(json!({"by": ["alert_rule"]}));
    let other = Bridge::new(
        r.grouped.clone(),
        r.store.clone(),
        r.bridge.settings().clone(),
        Arc::new({
            let now = r.now.clone();
            move || now.load(Ordering::SeqCst)
        }),
    );
    let alerts: Vec<Alert> = (0..40)
        .map(|i| r.alert(i, MonitorCondition::Fired, Severity::Sev3))
        .collect();
    let runs = alerts.iter().enumerate().map(|(i, a)| {
        let b = if i % 2 == 0 { &r.bridge } else { &other };
        b.process(a)
    });
    for result in futures::future::join_all(runs).await {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(r.itsm.incidents.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn first_and_never_resolve_as_named_and_a_person_closing_the_parent_is_respected() {
    let first = rig(json!({"by": ["alert_rule"], "resolve": "first"}));
    for vm in 0..3 {
        first.fire(vm).await;
    }
    first.resolve(1).await;
    assert_eq!(first.itsm.resolves.lock().unwrap().len(), 1);
    first.resolve(0).await;
    first.resolve(2).await;
    assert_eq!(
        first.itsm.resolves.lock().unwrap().len(),
        1,
        "once, at the first"
    );

    let never = rig(json!({"by": ["alert_rule"], "resolve": "never"}));
    for vm in 0..3 {
        never.fire(vm).await;
        never.resolve(vm).await;
    }
    never.grouped.round().await;
    assert!(never.itsm.resolves.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_ended_group_turns_the_next_firing_into_a_new_group() {
    let r = rig(json!({"by": ["alert_rule"]}));
    r.fire(1).await;
    r.resolve(1).await;
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
    r.fire(2).await;
    assert_eq!(
        r.itsm.parents().len(),
        2,
        "a Fired after the group resolved opens a new one"
    );
}

#[tokio::test]
async fn an_idle_group_of_alerts_azure_never_resolves_is_resolved_by_the_round_once() {
    let r = rig(json!({"by": ["alert_rule"], "idle_resolve_secs": 3600}));
    r.at(0);
    r.fire(1).await;
    r.fire(2).await;
    r.at(3599);
    let early = r.grouped.round().await;
    assert_eq!(early.parents_resolved, 0);
    assert!(r.itsm.resolves.lock().unwrap().is_empty());
    r.at(3600);
    let round = r.grouped.round().await;
    assert_eq!(
        (round.ended_idle, round.parents_resolved),
        (1, 1),
        "{round:?}"
    );
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
    r.at(3700);
    r.grouped.round().await;
    r.resolve(1).await;
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1, "resolved once");
    r.fire(3).await;
    assert_eq!(
        r.itsm.parents().len(),
        2,
        "the next firing opens a new group"
    );
}

#[tokio::test]
async fn a_grouped_alert_that_fires_again_joins_a_group_again_whatever_the_refire_policy() {
    use crate::domain::settings::RefirePolicy;
    for policy in [RefirePolicy::Reopen, RefirePolicy::Note, RefirePolicy::New] {
        let r = rig(json!({"by": ["alert_rule"]}));
        let mut settings = r.bridge.settings().clone();
        settings.refire = policy;
        let bridge = Bridge::new(r.grouped.clone(), r.store.clone(), settings, {
            let now = r.now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        });
        let fired = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
        bridge.process(&fired).await.unwrap();
        let resolved = r.alert(1, MonitorCondition::Resolved, Severity::Sev3);
        bridge.process(&resolved).await.unwrap();
        assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1, "{policy:?}");
        let mut again = fired.clone();
        again.fired_at = Some("2026-12-04T11:00:00Z".into());
        bridge.process(&again).await.unwrap();
        assert_eq!(r.itsm.parents().len(), 2, "{policy:?}: a new group");
        let mut resolved_again = resolved.clone();
        resolved_again.fired_at = again.fired_at.clone();
        bridge.process(&resolved_again).await.unwrap();
        assert_eq!(
            r.itsm.resolves.lock().unwrap().len(),
            2,
            "{policy:?}: and it resolves"
        );
    }
}

#[tokio::test]
async fn a_late_resolve_after_the_group_left_the_round_still_resolves_the_parent() {
    let r = rig(json!({"by": ["alert_rule"], "window_secs": 60, "max_age_secs": 600}));
    r.at(0);
    r.fire(1).await;
    r.fire(2).await;
    r.resolve(1).await;
    // Past its window and age, written, nothing pending: off the index.
    r.at(700);
    r.grouped.round().await;
    let idle = r.grouped.round().await;
    assert_eq!(idle.groups, 0, "{idle:?}");
    // Hours later the last child resolves while the ITSM is down: the
    // round, which had dropped the group, must still resolve the parent.
    r.at(20_000);
    r.itsm.down.store(true, Ordering::SeqCst);
    r.resolve(2).await;
    assert!(r.itsm.resolves.lock().unwrap().is_empty());
    r.itsm.down.store(false, Ordering::SeqCst);
    r.at(20_060);
    let round = r.grouped.round().await;
    assert_eq!(round.parents_resolved, 1, "{round:?}");
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn many_groups_spread_over_the_index_and_every_one_is_visited() {
    let r = rig(json!({"by": ["target"]}));
    r.at(0);
    for vm in 0..100 {
        r.fire(vm).await;
    }
    assert_eq!(r.itsm.parents().len(), 100);
    r.at(60);
    let round = r.grouped.round().await;
    assert_eq!(
        (round.groups, round.updates_written),
        (100, 100),
        "{round:?}"
    );
}

#[tokio::test]
async fn a_more_severe_child_raises_the_parents_priority_once_per_step_and_never_lowers_it() {
    let r = rig(json!({"by": ["alert_rule"], "notes_every_secs": 60}));
    r.at(0);
    r.fire_as(1, Severity::Sev3).await;
    let created_at = {
        let i = r.itsm.incidents.lock().unwrap();
        i[0].2.clone()
    };
    assert!(created_at.starts_with("vm-cpu"), "{created_at}");
    // Two more severe children, one less severe: one raise, to Sev1's levels.
    r.fire_as(2, Severity::Sev1).await;
    r.fire_as(3, Severity::Sev1).await;
    r.fire_as(4, Severity::Sev4).await;
    r.at(60);
    let round = r.grouped.round().await;
    assert_eq!(round.priorities_raised, 1, "{round:?}");
    let raised = r.itsm.priorities.lock().unwrap().clone();
    let sev1 = r.bridge.settings().severity.levels(Severity::Sev1);
    assert_eq!(raised, vec![("INC0000001".to_string(), sev1.0, sev1.1)]);
    let notes = r.itsm.notes.lock().unwrap().clone();
    assert!(
        notes[0].1.contains("Most severe alert now: Sev1"),
        "{notes:?}"
    );
    // A less severe one and an equal one: no raise. A Sev0: the next step.
    r.fire_as(5, Severity::Sev2).await;
    r.at(120);
    assert_eq!(r.grouped.round().await.priorities_raised, 0);
    r.fire_as(6, Severity::Sev0).await;
    r.at(180);
    assert_eq!(r.grouped.round().await.priorities_raised, 1);
    let raised = r.itsm.priorities.lock().unwrap().clone();
    assert_eq!(raised.len(), 2, "{raised:?}");
    let sev0 = r.bridge.settings().severity.levels(Severity::Sev0);
    assert_eq!((raised[1].1, raised[1].2), sev0);
}

#[tokio::test]
async fn a_raise_whose_update_failed_is_sent_again_with_it() {
    let r = rig(json!({"by": ["alert_rule"], "notes_every_secs": 60}));
    r.at(0);
    r.fire(1).await;
    let a = r.alert(2, MonitorCondition::Fired, Severity::Sev0);
    r.bridge.process(&a).await.unwrap();
    r.itsm.down.store(true, Ordering::SeqCst);
    r.at(60);
    r.grouped.round().await;
    assert!(r.itsm.priorities.lock().unwrap().is_empty());
    r.itsm.down.store(false, Ordering::SeqCst);
    // The update in flight is re-sent after its lease, with its raise.
    r.at(200);
    let round = r.grouped.round().await;
    assert_eq!(
        (round.priorities_raised, round.updates_written),
        (1, 1),
        "{round:?}"
    );
    assert_eq!(r.itsm.priorities.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_idle_group_whose_children_never_resolve_is_kept_thirty_days_then_gone() {
    use crate::domain::ports::{CorrelationStore, GroupStore};
    let r = rig(json!({"by": ["alert_rule"], "idle_resolve_secs": 3600}));
    r.at(0);
    r.fire(1).await;
    let a = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
    let record = r
        .store
        .get(&a.alert_id, 1_800_000_000)
        .await
        .unwrap()
        .unwrap();
    let gid = record.incident.unwrap().id;
    let gid = gid
        .trim_start_matches("group:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // Ended for idleness, its parent resolved, then off the round's index.
    for t in [3600, 3660, 3720] {
        r.at(t);
        r.grouped.round().await;
    }
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
    let at = |t: i64| 1_800_000_000 + t;
    let doc = r.store.group_doc(&gid, at(3720)).await.unwrap();
    assert!(
        doc.is_some_and(|d| d.expires_at.is_some()),
        "kept, with an end"
    );
    assert!(
        r.store
            .group_doc(&gid, at(3720 + 31 * 24 * 3600))
            .await
            .unwrap()
            .is_none(),
        "gone after 30 days"
    );
    // The child's Resolved months later: nothing to count, no ITSM call.
    r.at(3720 + 31 * 24 * 3600);
    r.resolve(1).await;
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
}
