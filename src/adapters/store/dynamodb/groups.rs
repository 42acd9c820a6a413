//! Alert groups' documents in the correlation table: item
//! `itsm-group#<id>` with the document as text, its version, and
//! `expires_at` (the table's TTL attribute) once the group is over.

use std::collections::HashMap;

use async_trait::async_trait;

use super::item::{n, s};
use super::{DynamoStore, number};
use crate::domain::ports::{GroupDoc, GroupStore, StoreError};

fn key(id: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    s(&format!("itsm-group#{id}"))
}

#[async_trait]
impl GroupStore for DynamoStore {
    async fn group_doc(&self, id: &str, now: i64) -> Result<Option<GroupDoc>, StoreError> {
        let Some(item) = self.get_own(key(id)).await? else {
            return Ok(None);
        };
        let expires_at = item
            .contains_key("expires_at")
            .then(|| number(&item, "group", "expires_at"))
            .transpose()?;
        if expires_at.is_some_and(|at| now >= at) {
            return Ok(None);
        }
        let body = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Unavailable(format!("group item {id} has no doc")))?;
        Ok(Some(GroupDoc {
            id: id.to_string(),
            body,
            version: number(&item, "group", "version")? as u64,
            expires_at,
        }))
    }

    async fn put_group_doc(
        &self,
        doc: &GroupDoc,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("alert_id".to_string(), key(&doc.id)),
            ("doc".to_string(), s(&doc.body)),
            ("version".to_string(), n(doc.version)),
        ]);
        if let Some(at) = doc.expires_at {
            item.insert("expires_at".to_string(), n(at));
        }
        self.put_own(item, expected, Some(now)).await
    }
}
