//! What the simulation found with grouped routes (`docs/sim-findings.md`,
//! "Grouped routes"), each as a test that failed before its fix: a store
//! write that fails between two of grouping's writes.

use crate::domain::correlation::{CorrelationRecord, RecordState};
use crate::domain::ports::{CorrelationStore, GroupDoc, GroupStore, StoreError};

use super::*;

/// The rig's store, failing one write on request: the record write after a
/// join (the answer that would have recorded it), or the write of the
/// round's index.
struct Flaky {
    inner: Arc<MemoryStore>,
    fail_open: AtomicBool,
    fail_index: AtomicBool,
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
        60,
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
