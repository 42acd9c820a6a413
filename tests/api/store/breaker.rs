//! The breaker store's contract (`domain::ports::BreakerStore`), one suite
//! for every store: nothing until written, a write only over the version
//! it expects, a read returning every field as written, one item per name.

use itsm_bridge::adapters::store::{DynamoStore, MemoryStore, RedbStore};
use itsm_bridge::domain::ports::{BreakerState, BreakerStore, StoreError};

async fn contract(store: &dyn BreakerStore) {
    assert_eq!(store.breaker("servicenow").await.unwrap(), None);
    let open = BreakerState {
        name: "servicenow".into(),
        down_since: 1_800_000_000,
        next_probe: 1_800_000_060,
        probing_until: 0,
        failures: 2,
        why: "ITSM unavailable: HTTP 503".into(),
        version: 1,
    };
    store.put_breaker(&open, None).await.unwrap();
    assert_eq!(
        store.breaker("servicenow").await.unwrap(),
        Some(open.clone())
    );
    // A second first write, or one over a version no longer there, loses.
    assert!(matches!(
        store.put_breaker(&open, None).await,
        Err(StoreError::Conflict(None))
    ));
    let closed = BreakerState {
        name: "servicenow".into(),
        version: 2,
        ..BreakerState::default()
    };
    assert!(matches!(
        store.put_breaker(&closed, Some(7)).await,
        Err(StoreError::Conflict(None))
    ));
    store.put_breaker(&closed, Some(1)).await.unwrap();
    assert_eq!(store.breaker("servicenow").await.unwrap(), Some(closed));
    // Each ITSM kind has its own.
    assert_eq!(store.breaker("jira").await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_keeps_the_breaker_contract() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn redb_store_keeps_the_breaker_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RedbStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_the_breaker_contract() {
    let aws = crate::moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let table = crate::moto::unique("breaker");
    DynamoStore::create_table(&client, &table).await.unwrap();
    contract(&DynamoStore::new(client, table)).await;
}
