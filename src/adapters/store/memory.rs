//! In-memory store: for tests and benches, where a file is in the way.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::{
    BreakerState, BreakerStore, CorrelationStore, GroupDoc, GroupStore, StoreError, SyncStore,
    Watermark,
};

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, CorrelationRecord>>,
    watermarks: Mutex<HashMap<String, Watermark>>,
    breakers: Mutex<HashMap<String, BreakerState>>,
    groups: Mutex<HashMap<String, GroupDoc>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every record, for assertions.
    pub fn snapshot(&self) -> Vec<CorrelationRecord> {
        self.records
            .lock()
            .expect("store lock")
            .values()
            .cloned()
            .collect()
    }
}

#[async_trait]
impl CorrelationStore for MemoryStore {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        let records = self.records.lock().expect("store lock");
        Ok(records
            .get(alert_id)
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut records = self.records.lock().expect("store lock");
        super::check_version(records.get(&record.alert_id), expected, now)?;
        records.insert(record.alert_id.clone(), record.clone());
        Ok(())
    }
}

#[async_trait]
impl SyncStore for MemoryStore {
    async fn by_key(
        &self,
        correlation_key: &str,
        now: i64,
    ) -> Result<Option<CorrelationRecord>, StoreError> {
        let records = self.records.lock().expect("store lock");
        Ok(records
            .values()
            .find(|r| r.correlation_key == correlation_key && r.expires_at > now)
            .cloned())
    }

    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError> {
        Ok(self
            .watermarks
            .lock()
            .expect("store lock")
            .get(name)
            .cloned())
    }

    async fn put_watermark(
        &self,
        watermark: &Watermark,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut marks = self.watermarks.lock().expect("store lock");
        if marks.get(&watermark.name).map(|w| w.version) != expected {
            return Err(StoreError::Conflict(None));
        }
        marks.insert(watermark.name.clone(), watermark.clone());
        Ok(())
    }
}

#[async_trait]
impl BreakerStore for MemoryStore {
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError> {
        Ok(self.breakers.lock().expect("store lock").get(name).cloned())
    }

    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut breakers = self.breakers.lock().expect("store lock");
        if breakers.get(&state.name).map(|b| b.version) != expected {
            return Err(StoreError::Conflict(None));
        }
        breakers.insert(state.name.clone(), state.clone());
        Ok(())
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError> {
        let docs = self.groups.lock().expect("store lock");
        Ok(docs.get(id).filter(|d| live(d, now)).cloned())
    }

    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut docs = self.groups.lock().expect("store lock");
        let current = docs
            .get(&doc.id)
            .filter(|d| live(d, now))
            .map(|d| d.version);
        if current != expected {
            return Err(StoreError::Conflict(None));
        }
        docs.insert(doc.id.clone(), doc.clone());
        Ok(())
    }
}

fn live(doc: &GroupDoc, now: i64) -> bool {
    doc.expires_at.is_none_or(|at| now < at)
}
