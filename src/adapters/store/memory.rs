//! In-memory store: for tests and benches, where a file is in the way.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::{CorrelationStore, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, CorrelationRecord>>,
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
