//! A person resolving a group's parent in the ITSM (seen by the sync
//! round's change feed): the group ends there. Its children's later
//! Resolved notifications are counted without an ITSM call, a later alert
//! of the key opens a new group, and the sync round closes the children
//! still open in Azure. The parent is found from its correlation key
//! through a small pointer document written before the parent is created.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::engine::Grouped;
use super::group::{End, Group};
use crate::domain::ports::{ItsmError, StoreError};
use crate::domain::sync::{ClosedParent, GroupParents};

/// The pointer from a parent's correlation key to its group.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ParentOf {
    pub group: String,
}

/// The pointer's document id: `parent-azmon-<hex>`.
pub(super) fn pointer_id(parent_key: &str) -> String {
    format!("parent-{parent_key}")
}

fn store_error(e: ItsmError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The children still open, when the group ended by a person (or has not
/// ended yet, read only); none when the bridge ended it (its own resolve).
fn open_after_person(g: &Group) -> Vec<String> {
    match g.ended {
        None | Some(End::Person) => {
            let mut open: Vec<(&u32, &String)> = g
                .members
                .iter()
                .filter(|(_, m)| m.open)
                .map(|(k, m)| (&m.n, k))
                .collect();
            open.sort();
            open.into_iter().map(|(_, k)| k.clone()).collect()
        }
        Some(_) => Vec::new(),
    }
}

#[async_trait]
impl GroupParents for Grouped {
    async fn closed_by_person(
        &self,
        correlation_key: &str,
        read_only: bool,
    ) -> Result<Option<ClosedParent>, StoreError> {
        if !correlation_key.starts_with("azmon-") {
            return Ok(None);
        }
        let now = (self.clock)();
        let Some((p, _)) = self
            .load::<ParentOf>(&pointer_id(correlation_key), now)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let group = if read_only {
            self.load::<Group>(&p.group, now)
                .await
                .map_err(store_error)?
                .map(|(g, _)| g)
        } else {
            // Listed before the change: the round gives the ended group its
            // expiry, also one it had parked (settled with children open)
            // before the person's resolve; a crash between the two writes
            // leaves it listed, not kept for good.
            let current = self.load::<Group>(&p.group, now).await;
            if current
                .map_err(store_error)?
                .is_some_and(|(g, _)| g.ended.is_none())
            {
                self.index_add(&p.group).await.map_err(store_error)?;
            }
            self.update(&p.group, |g, _| {
                if g.ended.is_none() {
                    g.ended = Some(End::Person);
                    // The parent is closed already: no resolve, no notes.
                    g.parent_work.resolved = true;
                    g.parent_work.note = None;
                    g.pending.clear();
                }
            })
            .await
            .map_err(store_error)?
        };
        let Some(g) = group else {
            return Ok(None);
        };
        if g.ended == Some(End::Person) && !read_only {
            tracing::info!(group = %p.group, children = g.members.len(), open = g.open_children(), "group resolved by a person");
        }
        Ok(Some(ClosedParent {
            open_children: open_after_person(&g),
            group: p.group,
        }))
    }

    async fn is_child(&self, correlation_key: &str) -> Result<bool, StoreError> {
        let marker = super::engine::member_id(correlation_key);
        let found: Option<(serde_json::Value, u64)> = self
            .load(&marker, (self.clock)())
            .await
            .map_err(store_error)?;
        Ok(found.is_some())
    }
}
