//! The correlation store: the crate's own in-memory store (conditional
//! writes on versions, records expiring at `expires_at`, the sync side's
//! reverse lookup and watermark, the ITSM's breaker, alert groups' documents),
//! with a fault at every call. A lost answer
//! is a write that happened while the caller heard an error, as DynamoDB's
//! time-outs do.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::domain::correlation::CorrelationRecord;
use itsm_bridge::domain::grouping::group::Group;
use itsm_bridge::domain::ports::{
    BreakerState, BreakerStore, CorrelationStore, GroupDoc, GroupStore, StoreError, SyncStore,
    Watermark,
};

use crate::exec::{Class, Ctx, Plan};

pub struct SimStore {
    pub inner: MemoryStore,
    ctx: Arc<Ctx>,
    /// Every write that took effect, in order (for checks).
    pub writes: Mutex<Vec<Write>>,
    /// Every group document ever written (for checks: an expired one is
    /// still read).
    group_ids: Mutex<BTreeSet<String>>,
    /// Group document writes that took effect: (time, task, id, version).
    pub group_writes: Mutex<Vec<(i64, usize, String, u64)>>,
}

/// A write that took effect: who wrote what, when.
#[derive(Debug, Clone)]
pub struct Write {
    pub t: i64,
    pub task: usize,
    pub record: CorrelationRecord,
}

impl SimStore {
    pub fn new(ctx: Arc<Ctx>) -> SimStore {
        SimStore {
            inner: MemoryStore::new(),
            ctx,
            writes: Mutex::default(),
            group_ids: Mutex::default(),
            group_writes: Mutex::default(),
        }
    }

    /// Every alert group (`<key>#<generation>`) as last written, expired or
    /// not, with no fault (for checks).
    pub fn groups(&self) -> Vec<(String, Group)> {
        let ids = self.group_ids.lock().expect("group ids").clone();
        ids.into_iter()
            .filter(|id| id.starts_with("grp-") && id.contains('#'))
            .filter_map(|id| {
                let doc = now_or_never(self.inner.group_doc(&id, i64::MIN)).ok()??;
                let group = serde_json::from_str(&doc.body).expect("a group document");
                Some((id, group))
            })
            .collect()
    }

    /// When a group document expires (`None`: never), with no fault.
    pub fn group_expiry(&self, id: &str) -> Option<i64> {
        now_or_never(self.inner.group_doc(id, i64::MIN))
            .ok()
            .flatten()
            .and_then(|d| d.expires_at)
    }

    /// Overwrites a group as it stands, with no fault (for the checks' own
    /// test).
    pub fn overwrite_group(&self, gid: &str, group: &Group) {
        let doc = now_or_never(self.inner.group_doc(gid, i64::MIN))
            .ok()
            .flatten()
            .expect("the group");
        let next = GroupDoc {
            body: serde_json::to_string(group).expect("json"),
            version: doc.version + 1,
            ..doc.clone()
        };
        now_or_never(self.inner.put_group_doc(&next, Some(doc.version), i64::MIN))
            .expect("written");
    }

    /// A group document's id in the trace: `G0#2` for the second group of
    /// rule G0's key, `member A3` for A3's marker (the index documents keep
    /// theirs).
    pub fn doc_name(&self, id: &str) -> String {
        if let Some(child) = id.strip_prefix("member-") {
            return format!("member {}", self.ctx.name(child));
        }
        if id.starts_with("groups-pending") {
            return id.to_string();
        }
        match id.split_once('#') {
            Some((key, generation)) => format!("{}#{generation}", self.ctx.name(key)),
            None => self.ctx.name(id),
        }
    }

    /// The record of `alert_id`, live or not, with no fault (for checks).
    pub fn record(&self, alert_id: &str) -> Option<CorrelationRecord> {
        self.inner
            .snapshot()
            .into_iter()
            .find(|r| r.alert_id == alert_id)
    }

    /// The sync watermark's `since`, with no fault (for checks).
    pub fn mark_since(&self, name: &str) -> Option<i64> {
        now_or_never(self.inner.watermark(name))
            .ok()
            .flatten()
            .map(|w| w.since)
    }
}

/// A group document in a few words, for the trace.
fn doc_shape(doc: &GroupDoc) -> String {
    let expiring = doc
        .expires_at
        .map_or(String::new(), |_| " (expiring)".into());
    let Ok(g) = serde_json::from_str::<Group>(&doc.body) else {
        return format!("v{}{expiring}", doc.version);
    };
    let mut s = format!(
        "v{} {} in, {} open, parent {}, lease {}, {} pending, update {}",
        doc.version,
        g.members.len(),
        g.open_children(),
        g.parent.as_ref().map_or("none", |p| p.number.as_str()),
        g.parent_work.lease_until % 1000,
        g.pending.len(),
        g.updates
    );
    if g.parent_work.note.is_some() {
        s.push_str(" in flight");
    }
    if let Some(end) = g.ended {
        s.push_str(&format!(
            ", ended {end:?}{}",
            if g.parent_work.resolved {
                " (resolved)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&expiring);
    s
}

fn failed(plan: Plan) -> StoreError {
    StoreError::Unavailable(format!("simulated: {plan:?}"))
}

/// What a write sets, in a few words, for the trace.
fn shape(r: &CorrelationRecord) -> String {
    let mut s = format!(
        "v{} {:?} lease {} q{}/d{}",
        r.version,
        r.state,
        r.lease_until % 1000,
        r.queued_seq,
        r.delivered_seq
    );
    if r.azure != Default::default() {
        s.push_str(&format!(
            " azure {:?} lease {}",
            r.azure.sent,
            r.azure.lease_until % 1000
        ));
    }
    s
}

/// Runs a store call whose own result may also fail (a conditional write).
async fn attempt<T>(
    ctx: &Ctx,
    op: &str,
    subject: &str,
    effect: impl FnOnce() -> Result<T, StoreError>,
    describe: impl Fn(&T) -> Option<String>,
) -> Result<T, StoreError> {
    let described = |r: &Result<T, StoreError>| match r {
        Ok(t) => describe(t),
        Err(StoreError::Conflict(Some(found))) => Some(format!("conflict, found {}", shape(found))),
        Err(e) => Some(e.to_string()),
    };
    match ctx
        .call(Class::Store, (op, subject), None, effect, described)
        .await
    {
        Ok(result) => result,
        Err(plan) => Err(failed(plan)),
    }
}

/// The in-memory store answers at once: run its future to completion.
fn now_or_never<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-memory store never waits"),
    }
}

#[async_trait]
impl CorrelationStore for SimStore {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        let name = self.ctx.name(alert_id);
        // The caller's `now`, as the real stores put it in their conditions.
        attempt(
            &self.ctx,
            "store.get",
            &name,
            || now_or_never(self.inner.get(alert_id, now)),
            |r| Some(r.as_ref().map_or("none".into(), shape)),
        )
        .await
    }

    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let subject = format!("{} {}", self.ctx.name(&record.alert_id), shape(record));
        attempt(
            &self.ctx,
            "store.put",
            &subject,
            || {
                let written = now_or_never(self.inner.put(record, expected, now));
                if written.is_ok() {
                    self.writes.lock().expect("writes").push(Write {
                        t: self.ctx.now(),
                        task: self.ctx.current(),
                        record: record.clone(),
                    });
                }
                written
            },
            |_| None,
        )
        .await
    }
}

#[async_trait]
impl SyncStore for SimStore {
    async fn by_key(
        &self,
        correlation_key: &str,
        now: i64,
    ) -> Result<Option<CorrelationRecord>, StoreError> {
        let name = self.ctx.name(correlation_key);
        attempt(
            &self.ctx,
            "store.by_key",
            &name,
            || now_or_never(self.inner.by_key(correlation_key, now)),
            |r| Some(r.as_ref().map_or("none".into(), shape)),
        )
        .await
    }

    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError> {
        attempt(
            &self.ctx,
            "store.watermark",
            name,
            || now_or_never(self.inner.watermark(name)),
            |_| None,
        )
        .await
    }

    async fn put_watermark(
        &self,
        watermark: &Watermark,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let subject = format!("since t+{}", watermark.since - self.ctx.start);
        attempt(
            &self.ctx,
            "store.put_watermark",
            &subject,
            || now_or_never(self.inner.put_watermark(watermark, expected)),
            |_| None,
        )
        .await
    }
}

#[async_trait]
impl BreakerStore for SimStore {
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError> {
        attempt(
            &self.ctx,
            "store.breaker",
            name,
            || now_or_never(self.inner.breaker(name)),
            |b| {
                Some(b.as_ref().map_or("none".into(), |b| {
                    format!("down_since={} next_probe={}", b.down_since, b.next_probe)
                }))
            },
        )
        .await
    }

    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let subject = format!("{} open={}", state.name, state.is_open());
        attempt(
            &self.ctx,
            "store.put_breaker",
            &subject,
            || now_or_never(self.inner.put_breaker(state, expected)),
            |_| None,
        )
        .await
    }
}

#[async_trait]
impl GroupStore for SimStore {
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError> {
        let name = self.doc_name(id);
        attempt(
            &self.ctx,
            "store.group_doc",
            &name,
            || now_or_never(self.inner.group_doc(id, now)),
            |d| Some(d.as_ref().map_or("none".into(), doc_shape)),
        )
        .await
    }

    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let subject = format!("{} {}", self.doc_name(&doc.id), doc_shape(doc));
        attempt(
            &self.ctx,
            "store.put_group_doc",
            &subject,
            || {
                let written = now_or_never(self.inner.put_group_doc(doc, expected, now));
                if written.is_ok() {
                    self.group_ids
                        .lock()
                        .expect("group ids")
                        .insert(doc.id.clone());
                    self.group_writes.lock().expect("group writes").push((
                        self.ctx.now(),
                        self.ctx.current(),
                        doc.id.clone(),
                        doc.version,
                    ));
                }
                written
            },
            |_| None,
        )
        .await
    }
}
