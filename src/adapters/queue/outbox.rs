//! The delivery queue locally: an outbox table in the embedded store's
//! file, in the order notifications were queued. `replay --drain` delivers
//! it; what the ITSM keeps refusing is parked in a table of its own.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::Message;
use crate::domain::ports::{DeliveryQueue, QueueError, QueuedNotification};

const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("outbox");
const PARKED: TableDefinition<u64, &str> = TableDefinition::new("outbox_parked");

#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
}

/// One queued notification: its place in the outbox and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub key: u64,
    pub message: String,
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError(format!("outbox: {e}"))
}

impl Outbox {
    /// The outbox in `db`, the embedded store's database.
    pub fn new(db: Arc<Database>) -> Outbox {
        Outbox { db }
    }

    /// On the calling thread, as the embedded store does (see there).
    async fn blocking<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        f(&self.db)
    }

    /// Everything queued, oldest first.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub async fn entries(&self) -> Result<Vec<OutboxEntry>, QueueError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(failed)?;
            let out = {
                let table = txn.open_table(OUTBOX).map_err(failed)?;
                let mut out = Vec::new();
                for item in table.iter().map_err(failed)? {
                    let (k, v) = item.map_err(failed)?;
                    out.push(OutboxEntry {
                        key: k.value(),
                        message: v.value().to_string(),
                    });
                }
                out
            };
            txn.commit().map_err(failed)?;
            Ok(out)
        })
        .await
    }

    /// Removes a delivered entry.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub async fn remove(&self, key: u64) -> Result<(), QueueError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            txn.open_table(OUTBOX)
                .map_err(failed)?
                .remove(key)
                .map_err(failed)?;
            txn.commit().map_err(failed)
        })
        .await
    }

    /// Moves an entry the ITSM refuses to the parked table, with the reason.
    ///
    /// # Errors
    /// When the file cannot be written; the entry then stays queued.
    pub async fn park(&self, entry: OutboxEntry, reason: String) -> Result<(), QueueError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut parked = txn.open_table(PARKED).map_err(failed)?;
                let record = serde_json::json!({"reason": reason, "message": entry.message});
                parked
                    .insert(entry.key, record.to_string().as_str())
                    .map_err(failed)?;
                txn.open_table(OUTBOX)
                    .map_err(failed)?
                    .remove(entry.key)
                    .map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    /// Puts every parked entry back in the outbox under its own key, so
    /// that it goes before whatever of its alert was queued after it (a
    /// redrive); how many.
    ///
    /// # Errors
    /// When the file cannot be written; then nothing moved.
    pub async fn unpark(&self) -> Result<u64, QueueError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(failed)?;
            let moved = {
                let mut parked = txn.open_table(PARKED).map_err(failed)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(failed)?;
                let mut moved = 0;
                while let Some((key, record)) = parked.pop_first().map_err(failed)? {
                    let record: serde_json::Value =
                        serde_json::from_str(record.value()).map_err(failed)?;
                    let message = record["message"].as_str().unwrap_or_default();
                    outbox.insert(key.value(), message).map_err(failed)?;
                    moved += 1;
                }
                moved
            };
            txn.commit().map_err(failed)?;
            Ok(moved)
        })
        .await
    }

    /// How many entries are parked.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub async fn parked(&self) -> Result<u64, QueueError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(failed)?;
            let n = txn
                .open_table(PARKED)
                .map_err(failed)?
                .len()
                .map_err(failed)?;
            txn.commit().map_err(failed)?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for Outbox {
    async fn send(&self, n: &QueuedNotification<'_>) -> Result<(), QueueError> {
        let message = Message::encode(n)?;
        self.blocking(move |db| {
            // redb has one writer at a time: the next key is the last plus one.
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut table = txn.open_table(OUTBOX).map_err(failed)?;
                let next = table
                    .last()
                    .map_err(failed)?
                    .map_or(1, |(k, _)| k.value() + 1);
                table.insert(next, message.as_str()).map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }
}
