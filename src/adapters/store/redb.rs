//! Embedded store on disk (redb): the default when no DynamoDB table is set.
//! One process owns the file; in Lambda that makes state per container.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::{
    BreakerState, BreakerStore, CorrelationStore, GroupDoc, GroupStore, StoreError, SyncStore,
    Watermark,
};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("correlation");
/// Correlation key → alert id, written with the record in one transaction
/// (the sync role's reverse lookup; the webhook commits once, as before).
const BY_KEY: TableDefinition<&str, &str> = TableDefinition::new("by_correlation_key");
/// Sync watermarks by name: `[since, azure_not_before, version]` as JSON.
const WATERMARKS: TableDefinition<&str, &[u8]> = TableDefinition::new("sync_watermark");
/// The ITSM's breaker by ITSM kind, as JSON.
const BREAKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("itsm_breaker");
/// Alert groups' documents by id, as `[body, version, expires_at or null]`.
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_group");

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

    /// Runs a redb transaction on the calling thread, fsync included. A
    /// transaction never awaits, so it cannot deadlock another; and the
    /// embedded store serves one event at a time (a Lambda container, a
    /// replay), where a hop to tokio's blocking pool and back cost more
    /// than the commit blocks (two thread wake-ups per transaction, about a
    /// fifth of the webhook's CPU per event: BENCHMARKS.md §11).
    async fn blocking<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.db)
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
                if current.as_ref().map(|c| &c.correlation_key) != Some(&record.correlation_key) {
                    let mut keys = txn.open_table(BY_KEY).map_err(unavailable)?;
                    keys.insert(record.correlation_key.as_str(), record.alert_id.as_str())
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl SyncStore for RedbStore {
    async fn by_key(
        &self,
        correlation_key: &str,
        now: i64,
    ) -> Result<Option<CorrelationRecord>, StoreError> {
        let key = correlation_key.to_string();
        let alert_id = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(unavailable)?;
                let table = match txn.open_table(BY_KEY) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(unavailable(e)),
                };
                let found = table.get(key.as_str()).map_err(unavailable)?;
                Ok(found.map(|v| v.value().to_string()))
            })
            .await?;
        let Some(alert_id) = alert_id else {
            return Ok(None);
        };
        // A refire may have given the alert a new key since.
        Ok(self
            .get(&alert_id, now)
            .await?
            .filter(|r| r.correlation_key == correlation_key))
    }

    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(WATERMARKS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            let found = table.get(name.as_str()).map_err(unavailable)?;
            found
                .map(|v| decode_watermark(&name, v.value()))
                .transpose()
        })
        .await
    }

    async fn put_watermark(
        &self,
        watermark: &Watermark,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let w = watermark.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(WATERMARKS).map_err(unavailable)?;
                let current = match table.get(w.name.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode_watermark(&w.name, v.value())?.version),
                    None => None,
                };
                if current != expected {
                    return Err(StoreError::Conflict(None));
                }
                let bytes = serde_json::to_vec(&[w.since, w.azure_not_before, w.version as i64])
                    .map_err(unavailable)?;
                table
                    .insert(w.name.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}

fn decode_watermark(name: &str, bytes: &[u8]) -> Result<Watermark, StoreError> {
    let [since, azure_not_before, version]: [i64; 3] = serde_json::from_slice(bytes)
        .map_err(|e| unavailable(format!("unreadable watermark {name}: {e}")))?;
    Ok(Watermark {
        name: name.to_string(),
        since,
        azure_not_before,
        version: version as u64,
    })
}

fn decode_breaker(bytes: &[u8]) -> Result<BreakerState, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| unavailable(format!("unreadable breaker: {e}")))
}

#[async_trait]
impl BreakerStore for RedbStore {
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(BREAKERS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            let found = table.get(name.as_str()).map_err(unavailable)?;
            found.map(|v| decode_breaker(v.value())).transpose()
        })
        .await
    }

    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let state = state.clone();
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&state).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(BREAKERS).map_err(unavailable)?;
                let current = match table.get(state.name.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode_breaker(v.value())?.version),
                    None => None,
                };
                if current != expected {
                    return Err(StoreError::Conflict(None));
                }
                table
                    .insert(state.name.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}

type StoredDoc = (String, u64, Option<i64>);

fn decode_group(id: &str, bytes: &[u8], now: i64) -> Result<Option<GroupDoc>, StoreError> {
    let (body, version, expires_at): StoredDoc = serde_json::from_slice(bytes)
        .map_err(|e| unavailable(format!("unreadable group document {id}: {e}")))?;
    Ok(expires_at.is_none_or(|at| now < at).then(|| GroupDoc {
        id: id.to_string(),
        body,
        version,
        expires_at,
    }))
}

#[async_trait]
impl GroupStore for RedbStore {
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(GROUPS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            let found = table.get(id.as_str()).map_err(unavailable)?;
            Ok(found
                .map(|v| decode_group(&id, v.value(), now))
                .transpose()?
                .flatten())
        })
        .await
    }

    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let doc = doc.clone();
        self.blocking(move |db| {
            let stored: StoredDoc = (doc.body, doc.version, doc.expires_at);
            let bytes = serde_json::to_vec(&stored).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(GROUPS).map_err(unavailable)?;
                let current = match table.get(doc.id.as_str()).map_err(unavailable)? {
                    Some(v) => decode_group(&doc.id, v.value(), now)?.map(|d| d.version),
                    None => None,
                };
                if current != expected {
                    return Err(StoreError::Conflict(None));
                }
                table
                    .insert(doc.id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}
