//! Correlation store adapters.

mod dynamodb;
mod memory;
mod redb;

pub use self::dynamodb::DynamoStore;
pub use self::memory::MemoryStore;
pub use self::redb::RedbStore;

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::StoreError;

/// The one rule every store enforces on `put`: the live record's version
/// must be `expected` (`None`: no live record).
pub(crate) fn check_version(
    current: Option<&CorrelationRecord>,
    expected: Option<u64>,
    now: i64,
) -> Result<(), StoreError> {
    let live = current.filter(|r| r.expires_at > now);
    if live.map(|r| r.version) == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict(live.cloned().map(Box::new)))
    }
}
