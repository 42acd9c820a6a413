//! Embedded store on disk (redb): the default when no DynamoDB table is set.
//! One process owns the file; in Lambda that makes state per container.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::{CorrelationStore, StoreError};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("correlation");

#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    /// Opens (or creates) `dir/correlation.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        crate::adapters::private_dir(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join("correlation.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Alert ids, incident numbers and queued alerts: its owner's only.
        crate::adapters::make_private(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot restrict {}: {e}", path.display()))
        })?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// The delivery outbox, in the same file (redb allows one handle per file).
    pub fn outbox(&self) -> crate::adapters::queue::Outbox {
        crate::adapters::queue::Outbox::new(self.db.clone())
    }

    /// Runs a redb transaction off the async threads: commits fsync.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<CorrelationRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| unavailable(format!("unreadable record: {e}")))
}

#[async_trait]
impl CorrelationStore for RedbStore {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        let key = alert_id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(RECORDS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            let found = table.get(key.as_str()).map_err(unavailable)?;
            match found {
                Some(v) => Ok(Some(decode(v.value())?).filter(|r| r.expires_at > now)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let record = record.clone();
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&record).map_err(unavailable)?;
            // redb has one writer at a time, so read-check-write is atomic.
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(RECORDS).map_err(unavailable)?;
                let current = match table.get(record.alert_id.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                super::check_version(current.as_ref(), expected, now)?;
                table
                    .insert(record.alert_id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}
