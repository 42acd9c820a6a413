//! The group store's contract (`domain::ports::GroupStore`), one suite for
//! every store: nothing until written, a write only over the version it
//! expects, the document back as written, expiry counting as absence.

use itsm_bridge::adapters::store::{DynamoStore, MemoryStore, RedbStore};
use itsm_bridge::domain::ports::{GroupDoc, GroupStore, StoreError};

const NOW: i64 = 1_800_000_000;

fn doc(id: &str, body: &str, version: u64, expires_at: Option<i64>) -> GroupDoc {
    GroupDoc {
        id: id.into(),
        body: body.into(),
        version,
        expires_at,
    }
}

async fn contract(store: &dyn GroupStore) {
    let id = "grp-0123456789abcdef0123456789abcdef#1";
    assert_eq!(store.group_doc(id, NOW).await.unwrap(), None);
    let first = doc(
        id,
        r#"{"members":{"a":{"name":"vm-1","open":true}}}"#,
        1,
        None,
    );
    store.put_group_doc(&first, None, NOW).await.unwrap();
    assert_eq!(store.group_doc(id, NOW).await.unwrap(), Some(first.clone()));
    // Of two first writes, or a write over a version no longer there, one loses.
    assert!(matches!(
        store.put_group_doc(&first, None, NOW).await,
        Err(StoreError::Conflict(None))
    ));
    let second = doc(id, "{}", 2, Some(NOW + 100));
    assert!(matches!(
        store.put_group_doc(&second, Some(7), NOW).await,
        Err(StoreError::Conflict(None))
    ));
    store.put_group_doc(&second, Some(1), NOW).await.unwrap();
    assert_eq!(
        store.group_doc(id, NOW + 99).await.unwrap(),
        Some(second.clone())
    );
    // Expired: absent, and a first write takes its place.
    assert_eq!(store.group_doc(id, NOW + 100).await.unwrap(), None);
    let again = doc(id, "{\"generation\":2}", 1, None);
    assert!(
        matches!(
            store.put_group_doc(&again, Some(2), NOW + 100).await,
            Err(StoreError::Conflict(None))
        ),
        "an expired document's version is no longer there"
    );
    store.put_group_doc(&again, None, NOW + 101).await.unwrap();
    assert_eq!(store.group_doc(id, NOW + 101).await.unwrap(), Some(again));
    // Each id is its own document, and they never mix with records.
    assert_eq!(store.group_doc("grp-other#1", NOW).await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_keeps_the_group_contract() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn redb_store_keeps_the_group_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RedbStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_the_group_contract() {
    let aws = crate::moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let table = crate::moto::unique("groups");
    DynamoStore::create_table(&client, &table).await.unwrap();
    contract(&DynamoStore::new(client, table)).await;
}
