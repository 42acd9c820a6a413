//! The correlation store: the crate's own in-memory store (conditional
//! writes on versions, records expiring at `expires_at`, the sync side's
//! reverse lookup and watermark, the ITSM's breaker), with a fault at every call. A lost answer
//! is a write that happened while the caller heard an error, as DynamoDB's
//! time-outs do.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::domain::correlation::CorrelationRecord;
use itsm_bridge::domain::ports::{
    BreakerState, BreakerStore, CorrelationStore, StoreError, SyncStore, Watermark,
};

use crate::exec::{Class, Ctx, Plan};

pub struct SimStore {
    pub inner: MemoryStore,
    ctx: Arc<Ctx>,
    /// Every write that took effect, in order (for checks).
    pub writes: Mutex<Vec<Write>>,
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
