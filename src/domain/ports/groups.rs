//! Where alert groups live (`domain::grouping`): small JSON documents the
//! grouping domain reads and writes whole, each conditionally on its version,
//! so that of concurrent writers exactly one wins, as for correlation records.

use async_trait::async_trait;

use super::StoreError;

/// One stored document: a group, the head that says which generation of a
/// key is current, or the list of groups with work pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDoc {
    /// `[a-z0-9#-]`, at most 64 characters (the grouping domain makes them).
    pub id: String,
    /// JSON, at most 350 KB (a DynamoDB item holds 400 KB).
    pub body: String,
    /// Bumped on every write; writes are conditional on it.
    pub version: u64,
    /// Unix seconds after which the document counts as absent (`None`: never).
    pub expires_at: Option<i64>,
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// The document `id`, unless absent or expired at `now`. Read consistently.
    ///
    /// # Errors
    /// `Unavailable` only.
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError>;

    /// Writes `doc` if the live document's version is `expected` (`None`:
    /// none live). Idempotent only in that a repeat loses.
    ///
    /// # Errors
    /// `Conflict(None)` when the version differs, `Unavailable` otherwise.
    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError>;
}
