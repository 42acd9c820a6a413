//! The correlation store contract, one suite for every store, and the
//! number of store round trips per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use async_trait::async_trait;
use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::dryrun::DryRun;
use itsm_bridge::adapters::servicenow::ServiceNowFormat;
use itsm_bridge::adapters::store::{DynamoStore, MemoryStore, RedbStore};
use itsm_bridge::domain::correlation::{CorrelationRecord, NEVER, RecordState, correlation_key};
use itsm_bridge::domain::outcome::Outcome;
use itsm_bridge::domain::ports::{CorrelationStore, StoreError, SyncStore};
use itsm_bridge::domain::settings::Settings;
use itsm_bridge::domain::state_machine::Bridge;
use itsm_bridge::inbound::common_schema;

use crate::helpers::{metric_alert, now};

fn record(id: &str, version: u64, expires_at: i64) -> CorrelationRecord {
    CorrelationRecord {
        alert_id: id.into(),
        correlation_key: itsm_bridge::domain::correlation::correlation_key(id),
        itsm: "servicenow".into(),
        state: RecordState::Claimed,
        incident: None,
        fired_at: Some("2025-04-15T18:17:12.851Z".into()),
        resolved_at: None,
        lease_until: now() + 60,
        updated_at: now(),
        expires_at,
        version,
        queued_seq: 0,
        delivered_seq: 0,
        queued_at: 0,
        queued_digest: None,
        queue: Default::default(),
        look_until: 0,
        azure: Default::default(),
    }
}

/// What every store must do: conditional writes on the version, expired
/// records count as absent, and a lost write says what it met.
async fn contract(store: &dyn CorrelationStore, id: &str) {
    let t = now();
    assert_eq!(store.get(id, t).await.unwrap(), None);
    let first = record(id, 1, t + 3600);
    store.put(&first, None, t).await.unwrap();
    assert_eq!(store.get(id, t).await.unwrap().as_ref(), Some(&first));

    match store.put(&record(id, 1, t + 3600), None, t).await {
        Err(StoreError::Conflict(found)) => assert_eq!(found.as_deref(), Some(&first)),
        other => panic!("a second insert must lose: {other:?}"),
    }
    assert!(matches!(
        store.put(&record(id, 3, t + 3600), Some(7), t).await,
        Err(StoreError::Conflict(_))
    ));

    let mut second = record(id, 2, t + 3600);
    second.state = RecordState::Open;
    store.put(&second, Some(1), t).await.unwrap();
    assert_eq!(
        store.get(id, t).await.unwrap().unwrap().state,
        RecordState::Open
    );

    // Past its expiry a record is gone, and a new one may take its place.
    assert_eq!(store.get(id, t + 7200).await.unwrap(), None);
    assert!(matches!(
        store.put(&record(id, 3, t + 9000), Some(2), t + 7200).await,
        Err(StoreError::Conflict(None))
    ));
    store
        .put(&record(id, 1, t + 9000), None, t + 7200)
        .await
        .unwrap();
    assert_eq!(store.get(id, t + 7200).await.unwrap().unwrap().version, 1);

    // A record that never expires is live whenever it is read or written,
    // and takes an expiry again when it is written with one.
    let open = format!("{id}/open");
    let years = t + 20 * 365 * 86_400;
    store.put(&record(&open, 1, NEVER), None, t).await.unwrap();
    assert_eq!(store.get(&open, years).await.unwrap().unwrap().version, 1);
    assert!(matches!(
        store.put(&record(&open, 1, t + 60), None, years).await,
        Err(StoreError::Conflict(Some(_)))
    ));
    store
        .put(&record(&open, 2, years + 60), Some(1), years)
        .await
        .unwrap();
    assert_eq!(store.get(&open, years + 61).await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new(), "/subscriptions/s/alerts/memory").await;
}

#[tokio::test]
async fn redb_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(
        &RedbStore::open(dir.path()).unwrap(),
        "/subscriptions/s/alerts/redb",
    )
    .await;
}

#[tokio::test]
async fn dynamodb_store_keeps_the_contract() {
    let aws = crate::moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let table = crate::moto::unique("contract");
    DynamoStore::create_table(&client, &table).await.unwrap();
    contract(
        &DynamoStore::new(client, table),
        "/subscriptions/s/alerts/dynamodb",
    )
    .await;
}

/// Counts store operations, to hold the round trips per event to the minimum.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    gets: AtomicUsize,
    puts: AtomicUsize,
}

impl Counting {
    fn take(&self) -> (usize, usize) {
        (
            self.gets.swap(0, Ordering::SeqCst),
            self.puts.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl CorrelationStore for Counting {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(alert_id, now).await
    }
    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(record, expected, now).await
    }
}

#[tokio::test]
async fn store_round_trips_per_event() {
    let store = Arc::new(Counting::default());
    let itsm = Arc::new(DryRun::new(Box::new(ServiceNowFormat::default()), None));
    let bridge = Bridge::new(itsm, store.clone(), Settings::default(), system_clock());
    let event = |id: &str, condition: &str| {
        common_schema::parse(metric_alert(id, condition).to_string().as_bytes()).unwrap()
    };
    let run = async |id: &str, condition: &str| {
        let outcome = bridge.process(&event(id, condition)).await.unwrap().outcome;
        (outcome, store.take())
    };
    // (gets, puts): a lost conditional write returns the record it met, so no read is needed.
    assert_eq!(run("a", "Fired").await, (Outcome::Created, (0, 2)));
    assert_eq!(run("a", "Fired").await, (Outcome::Duplicate, (0, 1)));
    assert_eq!(run("a", "Resolved").await, (Outcome::Resolved, (0, 2)));
    assert_eq!(
        run("a", "Resolved").await,
        (Outcome::AlreadyResolved, (0, 1))
    );
    assert_eq!(
        run("b", "Resolved").await,
        (Outcome::ResolvedWithoutIncident, (0, 1))
    );
    assert_eq!(run("b", "Fired").await, (Outcome::StaleFired, (0, 1)));
}

/// An alert that stays Fired past `RECORD_TTL_DAYS` on a real store: its
/// Resolved still resolves the incident, and the sync role's reverse lookup
/// still finds the record meanwhile.
async fn open_longer_than_the_ttl<S>(store: Arc<S>, id: &str)
where
    S: CorrelationStore + SyncStore + 'static,
{
    let t0 = now();
    let clock = Arc::new(AtomicI64::new(t0));
    let at = clock.clone();
    let itsm = Arc::new(DryRun::new(Box::new(ServiceNowFormat::default()), None));
    let settings = Settings::default();
    let ttl = settings.ttl_secs;
    let bridge = Bridge::new(
        itsm,
        store.clone(),
        settings,
        Arc::new(move || at.load(Ordering::SeqCst)),
    );
    let event = |condition: &str| {
        common_schema::parse(metric_alert(id, condition).to_string().as_bytes()).unwrap()
    };
    let fired = bridge.process(&event("Fired")).await.unwrap();
    assert_eq!(fired.outcome, Outcome::Created);
    let alert_id = event("Fired").alert_id;

    let later = t0 + ttl + 30 * 86_400;
    clock.store(later, Ordering::SeqCst);
    let found = store
        .by_key(&correlation_key(&alert_id), later)
        .await
        .unwrap()
        .expect("the reverse lookup finds the open incident's record");
    assert_eq!(
        (found.state, found.incident.as_ref()),
        (RecordState::Open, fired.incident.as_ref())
    );

    let resolved = bridge.process(&event("Resolved")).await.unwrap();
    assert_eq!(
        (resolved.outcome, resolved.incident),
        (Outcome::Resolved, fired.incident)
    );
    let record = store.get(&alert_id, later).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.expires_at),
        (RecordState::Resolved, later + ttl)
    );
}

#[tokio::test]
async fn redb_keeps_an_open_incident_past_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    open_longer_than_the_ttl(store, "open-past-ttl-redb").await;
}

#[tokio::test]
async fn dynamodb_keeps_an_open_incident_past_the_ttl() {
    let aws = crate::moto::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let table = crate::moto::unique("past-ttl");
    DynamoStore::create_table(&client, &table).await.unwrap();
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    let id = "open-past-ttl-dynamodb";
    // While the incident is open its item carries no TTL attribute, so
    // DynamoDB's TTL process never deletes it.
    let t = now();
    let bridge = Bridge::new(
        Arc::new(DryRun::new(Box::new(ServiceNowFormat::default()), None)),
        store.clone(),
        Settings::default(),
        Arc::new(move || t),
    );
    let fired =
        common_schema::parse(metric_alert("open-item", "Fired").to_string().as_bytes()).unwrap();
    bridge.process(&fired).await.unwrap();
    let ttl_attribute = |alert_id: String| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key(
                    "alert_id",
                    aws_sdk_dynamodb::types::AttributeValue::S(alert_id),
                )
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            item.get("expires_at").map(|v| v.as_n().unwrap().clone())
        }
    };
    assert_eq!(ttl_attribute(fired.alert_id.clone()).await, None);

    open_longer_than_the_ttl(store, id).await;
    let alert_id = common_schema::parse(metric_alert(id, "Resolved").to_string().as_bytes())
        .unwrap()
        .alert_id;
    let expires: i64 = ttl_attribute(alert_id).await.unwrap().parse().unwrap();
    assert!(expires > now(), "{expires}");
}

mod breaker;
mod groups;
