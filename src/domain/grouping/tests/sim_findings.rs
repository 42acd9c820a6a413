//! What the simulation found with grouped routes (`docs/sim-findings.md`,
//! "Grouped routes"), each as a test that failed before its fix: a store
//! write that fails between two of grouping's writes.

use crate::domain::correlation::{CorrelationRecord, RecordState, correlation_key};
use crate::domain::ports::{CorrelationStore, GroupDoc, GroupStore, StoreError};

use super::*;

/// Work that runs inside a store call, before its write: another
/// container's, between two of this one's (run to its end at once: the
/// rig's store and ITSM never wait).
type Meanwhile = Box<dyn FnOnce() + Send>;

/// The rig's store, failing one write on request: the record write after a
/// join (the answer that would have recorded it), or the write of the
/// round's index; or running other work just before one write.
struct Flaky {
    inner: Arc<MemoryStore>,
    fail_open: AtomicBool,
    fail_index: AtomicBool,
    /// Before the next write of a document whose id starts so.
    before: Mutex<Option<(String, Meanwhile)>>,
}

fn failed() -> StoreError {
    StoreError::Unavailable("simulated".into())
}

#[async_trait]
impl CorrelationStore for Flaky {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        self.inner.get(alert_id, now).await
    }

    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        if record.state == RecordState::Open && self.fail_open.swap(false, Ordering::SeqCst) {
            return Err(failed());
        }
        self.inner.put(record, expected, now).await
    }
}

#[async_trait]
impl GroupStore for Flaky {
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError> {
        self.inner.group_doc(id, now).await
    }

    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        if doc.id.starts_with("groups-pending") && self.fail_index.swap(false, Ordering::SeqCst) {
            return Err(failed());
        }
        let due = {
            let mut before = self.before.lock().unwrap();
            match before.as_ref() {
                Some((prefix, _)) if doc.id.starts_with(prefix.as_str()) => before.take(),
                _ => None,
            }
        };
        if let Some((_, meanwhile)) = due {
            meanwhile();
        }
        self.inner.put_group_doc(doc, expected, now).await
    }
}

/// The rig, its bridge and grouping over the flaky store.
fn flaky(group: serde_json::Value) -> (Rig, Arc<Flaky>) {
    let r = rig(group);
    let store = Arc::new(Flaky {
        inner: r.store.clone(),
        fail_open: AtomicBool::new(false),
        fail_index: AtomicBool::new(false),
        before: Mutex::new(None),
    });
    let clock: Clock = {
        let now = r.now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let settings = r.bridge.settings().clone();
    let grouped = Arc::new(Grouped::new(
        r.itsm.clone(),
        store.clone(),
        clock.clone(),
        &settings,
    ));
    let bridge = Bridge::new(grouped.clone(), store.clone(), settings, clock);
    let rig = Rig {
        itsm: r.itsm,
        store: r.store,
        now: r.now,
        grouped,
        bridge,
    };
    (rig, store)
}

/// The groups (`<key>#<n>`, n from 1) that hold vm `vm`'s alert.
async fn groups_of(r: &Rig, vm: usize) -> Vec<u32> {
    let alert = r.alert(vm, MonitorCondition::Fired, Severity::Sev3);
    let key = r.bridge.draft(&alert).1.group.expect("grouped").key.id();
    let child = correlation_key(&alert.alert_id);
    let mut out = Vec::new();
    for n in 1..10 {
        if let Some(doc) = r.store.group_doc(&format!("{key}#{n}"), 0).await.unwrap() {
            let g: group::Group = serde_json::from_str(&doc.body).unwrap();
            if g.members.contains_key(&child) {
                out.push(n);
            }
        }
    }
    out
}

/// Seed 117 and its kind: the last child's resolve is written to its group
/// (which had left the round's index), then the index write fails; the
/// retry finds the child counted and does nothing, and no round ever sees
/// the group again: its parent stays open.
#[tokio::test]
async fn a_resolve_whose_index_write_fails_still_resolves_the_parent() {
    let (r, store) = flaky(json!({"by": ["alert_rule"], "window_secs": 60, "max_age_secs": 600}));
    r.at(0);
    r.fire(1).await;
    r.fire(2).await;
    r.resolve(1).await;
    r.at(700);
    r.grouped.round().await;
    assert_eq!(r.grouped.round().await.groups, 0, "off the index");
    r.at(20_000);
    store.fail_index.store(true, Ordering::SeqCst);
    let last = r.alert(2, MonitorCondition::Resolved, Severity::Sev3);
    assert!(r.bridge.process(&last).await.is_err());
    // Azure's retry, then the round.
    r.resolve(2).await;
    r.at(20_060);
    r.grouped.round().await;
    assert_eq!(
        r.itsm.resolves.lock().unwrap().len(),
        1,
        "the parent resolved once"
    );
}

/// Seed 18 and its kind: a child joins, the record write after it fails;
/// two groups later its retry looks in the current group and the one
/// before, not finding it, and joins again: one child in two groups, the
/// first of which counts it open for good.
#[tokio::test]
async fn a_join_whose_answer_was_lost_is_found_groups_later_not_made_twice() {
    let (r, store) = flaky(json!({"by": ["alert_rule"], "window_secs": 60, "max_age_secs": 600}));
    r.at(0);
    store.fail_open.store(true, Ordering::SeqCst);
    let first = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
    assert!(r.bridge.process(&first).await.is_err());
    r.at(700);
    r.fire(2).await;
    r.at(1400);
    r.fire(3).await;
    r.at(1500);
    r.fire(1).await;
    assert_eq!(
        groups_of(&r, 1).await,
        vec![1],
        "a child of its first group only"
    );
}

/// Seed 51 and its kind: a child joins, the record write after it fails,
/// and its Resolved finds the record still claimed: the search finds no
/// incident of the child's own, the alert is recorded resolved without
/// one, and its group counts it open for good (its parent never resolves).
#[tokio::test]
async fn a_resolve_after_a_join_whose_answer_was_lost_counts_the_child_out() {
    let (r, store) = flaky(json!({"by": ["alert_rule"]}));
    r.at(0);
    store.fail_open.store(true, Ordering::SeqCst);
    let first = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
    assert!(r.bridge.process(&first).await.is_err());
    r.fire(2).await;
    r.at(120);
    r.resolve(1).await;
    r.resolve(2).await;
    assert_eq!(
        r.itsm.resolves.lock().unwrap().len(),
        1,
        "both children counted out: the parent resolved"
    );
}

/// Seed 1095 and its kind: the round finds a group with nothing left to do
/// and drops it from the index; in between, a late resolve (the group
/// still listed, so it writes no index) counts a child out. The change is
/// never written to the parent.
#[tokio::test]
async fn a_late_resolve_while_the_round_drops_its_group_is_still_written() {
    let (r, store) = flaky(
        json!({"by": ["alert_rule"], "window_secs": 60, "max_age_secs": 600,
                                  "resolve": "never"}),
    );
    r.at(0);
    r.fire(1).await;
    r.fire(2).await;
    r.at(60);
    r.grouped.round().await;
    assert_eq!(r.itsm.notes.lock().unwrap().len(), 1);
    r.at(700);
    let alert = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
    let key = r.bridge.draft(&alert).1.group.expect("grouped").key.id();
    let child = IncidentRef {
        id: format!("group:{key}#1/{}", correlation_key(&alert.alert_id)),
        number: "INC0000001".into(),
    };
    let grouped = r.grouped.clone();
    let late: Meanwhile = Box::new(move || {
        let notes = Resolution {
            notes: "resolved".into(),
        };
        futures::executor::block_on(grouped.resolve(&child, &notes)).expect("counted out");
    });
    *store.before.lock().unwrap() = Some(("groups-pending".into(), late));
    r.grouped.round().await;
    r.at(800);
    r.grouped.round().await;
    let notes = r.itsm.notes.lock().unwrap();
    assert!(
        notes.iter().any(|(_, n)| n.contains("- resolved: vm-1")),
        "{notes:?}"
    );
}

/// Seed 486 and its kind: a group's opener lists it, then writes it; the
/// round reads the index in between, finds no document and drops it. No
/// update of the group is ever written.
#[tokio::test]
async fn a_group_the_round_meets_before_its_opener_wrote_it_stays_listed() {
    let (r, store) = flaky(json!({"by": ["alert_rule"]}));
    r.at(0);
    let alert = r.alert(1, MonitorCondition::Fired, Severity::Sev3);
    let key = r.bridge.draft(&alert).1.group.expect("grouped").key.id();
    let grouped = r.grouped.clone();
    let round: Meanwhile = Box::new(move || {
        futures::executor::block_on(grouped.round());
    });
    *store.before.lock().unwrap() = Some((format!("{key}#1"), round));
    r.fire(1).await;
    r.fire(2).await;
    r.at(60);
    let round = r.grouped.round().await;
    assert_eq!(round.updates_written, 1, "{round:?}");
}

/// Two attempts of one child at once (its claim's lease ran out under the
/// first, or two containers' clocks disagree): the first marks the child
/// for group 1 and is about to write it there; the second, later, finds
/// group 1 past its window, opens group 2 and moves the marker. The
/// first's write then went through: one child in two groups.
#[tokio::test]
async fn two_attempts_of_one_child_at_once_leave_it_in_one_group() {
    let (r, store) = flaky(json!({"by": ["alert_rule"], "window_secs": 60}));
    r.at(0);
    r.fire(1).await;
    r.at(30);
    let alert = r.alert(2, MonitorCondition::Fired, Severity::Sev3);
    let draft = r.bridge.draft(&alert).1;
    let key = draft.group.as_ref().expect("grouped").key.id();
    let (grouped, now, second) = (r.grouped.clone(), r.now.clone(), draft.clone());
    let other: Meanwhile = Box::new(move || {
        // The other attempt, 2 minutes on: group 1 takes no one now.
        now.store(1_800_000_000 + 150, Ordering::SeqCst);
        futures::executor::block_on(grouped.create(&second)).expect("joined");
    });
    *store.before.lock().unwrap() = Some((format!("{key}#1"), other));
    r.grouped.create(&draft).await.expect("joined");
    assert_eq!(
        groups_of(&r, 2).await.len(),
        1,
        "{:?}",
        groups_of(&r, 2).await
    );
}
