//! DynamoDB correlation store: one item per alert, partition key
//! `alert_id`, every write conditional on the item's `version`, and a
//! `expires_at` TTL attribute, left out of the items of records that must
//! not expire (DynamoDB's TTL process deletes only items that carry it as a
//! number; the store reads its absence as never). The sync role finds a
//! record from its correlation key through a keys-only global secondary
//! index (DynamoDB keeps it; the webhook's writes stay one request each),
//! and keeps its watermark in an item of its own (`alert_id` = `sync-watermark#<itsm>`,
//! no alert id starts so; without `correlation_key` it is not indexed), and
//! the ITSM's breaker likewise (`alert_id` = `itsm-breaker#<itsm>`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::domain::correlation::CorrelationRecord;
use crate::domain::ports::{
    BreakerState, BreakerStore, CorrelationStore, StoreError, SyncStore, Watermark,
};

mod groups;
mod item;
use item::{from_item, n, s, to_item};

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// Creates the table as `infra/template.yaml` does (on-demand, TTL on
    /// `expires_at`), unless it exists: for emulators and tests only.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), String> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
        };
        let attr = AttributeDefinition::builder()
            .attribute_name("alert_id")
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| e.to_string())?;
        let key = KeySchemaElement::builder()
            .attribute_name("alert_id")
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| e.to_string())?;
        let by_key = GlobalSecondaryIndex::builder()
            .index_name(BY_KEY_INDEX)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("correlation_key")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(|e| e.to_string())?;
        let key_attr = AttributeDefinition::builder()
            .attribute_name("correlation_key")
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| e.to_string())?;
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr)
            .attribute_definitions(key_attr)
            .key_schema(key)
            .global_secondary_indexes(by_key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => {
                return Ok(());
            }
            Err(e) => return Err(format!("CreateTable {table}: {}", DisplayErrorContext(&e))),
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name("expires_at")
            .enabled(true)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| format!("UpdateTimeToLive {table}: {}", DisplayErrorContext(&e)))?;
        Ok(())
    }
}

/// The index `infra/template.yaml` declares on `correlation_key`.
pub const BY_KEY_INDEX: &str = "by-correlation-key";

/// Throttling, timeouts and outages alike: the caller answers 503. The
/// message leads with the cause and what fixes it; the SDK's whole error,
/// a kilobyte of nested structure, goes to the debug log only.
fn unavailable<E, R>(op: &str, table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&e).to_string();
    tracing::debug!(error = %detail, "DynamoDB {op} failed");
    let cause = match &e {
        SdkError::ServiceError(s) => match s.err().code() {
            Some("ResourceNotFoundException") => format!(
                "table {table} does not exist; create it (infra/template.yaml does) or set CORRELATION_TABLE"
            ),
            Some(code @ ("AccessDeniedException" | "UnrecognizedClientException")) => format!(
                "{code}: these AWS credentials may not use table {table}; check the role's policy"
            ),
            Some(code) => format!("{code}: {}", s.err().message().unwrap_or("no message")),
            None => "DynamoDB answered with an error it did not name".into(),
        },
        _ if detail.contains("credentials") => "no AWS credentials could be loaded; set AWS_PROFILE, \
             or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (locally, the embedded store needs none: \
             leave CORRELATION_TABLE unset, or replay --store embedded)"
            .into(),
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".into(),
        SdkError::DispatchFailure(d) if d.is_io() => {
            "could not connect to DynamoDB; check AWS_REGION (and AWS_ENDPOINT_URL, if set)".into()
        }
        _ => "the request failed (RUST_LOG=debug shows the SDK's error)".into(),
    };
    StoreError::Unavailable(format!("DynamoDB {op}: {cause}"))
}

#[async_trait]
impl CorrelationStore for DynamoStore {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alert_id", s(alert_id))
            // The state machine decides on what it reads: read the latest write.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &self.table, e))?;
        match out.item() {
            // DynamoDB deletes expired items lazily, some time after expiry.
            Some(item) => Ok(Some(from_item(item)?).filter(|r| r.expires_at > now)),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)))
            .expression_attribute_values(":now", n(now))
            // A lost race hands back the winner's item: no extra read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = match expected {
            // An item without `expires_at` never expires: `<=` is false for it.
            None => {
                req.condition_expression("attribute_not_exists(alert_id) OR expires_at <= :now")
            }
            Some(v) => req
                .condition_expression(
                    "version = :v AND (attribute_not_exists(expires_at) OR expires_at > :now)",
                )
                .expression_attribute_values(":v", n(v)),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let found = match e.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().map(from_item).transpose()?
                    }
                    _ => None,
                };
                Err(StoreError::Conflict(
                    found.filter(|r| r.expires_at > now).map(Box::new),
                ))
            }
            Err(e) => Err(unavailable("PutItem", &self.table, e)),
        }
    }
}

fn watermark_key(name: &str) -> AttributeValue {
    s(&format!("sync-watermark#{name}"))
}

#[async_trait]
impl SyncStore for DynamoStore {
    async fn by_key(
        &self,
        correlation_key: &str,
        now: i64,
    ) -> Result<Option<CorrelationRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_KEY_INDEX)
            .key_condition_expression("correlation_key = :k")
            .expression_attribute_values(":k", s(correlation_key))
            .send()
            .await
            .map_err(|e| unavailable("Query", &self.table, e))?;
        // The index is eventually consistent and holds keys only: the
        // record itself is read consistently, and must still carry the key.
        for item in out.items() {
            let Some(alert_id) = item.get("alert_id").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            if let Some(r) = self.get(alert_id, now).await?
                && r.correlation_key == correlation_key
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError> {
        let Some(item) = self.get_own(watermark_key(name)).await? else {
            return Ok(None);
        };
        let num = |k: &str| number(&item, "watermark", k);
        Ok(Some(Watermark {
            name: name.to_string(),
            since: num("since")?,
            azure_not_before: num("azure_not_before")?,
            version: num("version")? as u64,
        }))
    }

    async fn put_watermark(
        &self,
        watermark: &Watermark,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("alert_id".to_string(), watermark_key(&watermark.name)),
            ("since".to_string(), n(watermark.since)),
            (
                "azure_not_before".to_string(),
                n(watermark.azure_not_before),
            ),
            ("version".to_string(), n(watermark.version)),
        ]);
        self.put_own(item, expected, None).await
    }
}

/// The store's own items (watermarks, breakers): keyed beside the alerts
/// (no alert id starts with their prefixes), versioned, never expiring.
impl DynamoStore {
    async fn get_own(
        &self,
        key: AttributeValue,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("alert_id", key)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &self.table, e))?;
        Ok(out.item)
    }

    /// Writes `item` if the stored one's version is `expected` (`None`: none
    /// stored, or, given `now`, one whose `expires_at` has passed: DynamoDB's
    /// TTL deletes expired items late, and they count as absent).
    async fn put_own(
        &self,
        item: HashMap<String, AttributeValue>,
        expected: Option<u64>,
        now: Option<i64>,
    ) -> Result<(), StoreError> {
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let req = match (expected, now) {
            (None, None) => req.condition_expression("attribute_not_exists(alert_id)"),
            (None, Some(now)) => req
                .condition_expression("attribute_not_exists(alert_id) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now)),
            (Some(v), None) => req
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
            (Some(v), Some(now)) => req
                .condition_expression(
                    "version = :v AND (attribute_not_exists(expires_at) OR expires_at > :now)",
                )
                .expression_attribute_values(":v", n(v))
                .expression_attribute_values(":now", n(now)),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(StoreError::Conflict(None))
            }
            Err(e) => Err(unavailable("PutItem", &self.table, e)),
        }
    }
}

/// Number attribute `k` of one of the store's own items (`what`).
fn number(item: &HashMap<String, AttributeValue>, what: &str, k: &str) -> Result<i64, StoreError> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Unavailable(format!("{what} item has no valid {k}")))
}

fn breaker_key(name: &str) -> AttributeValue {
    s(&format!("itsm-breaker#{name}"))
}

#[async_trait]
impl BreakerStore for DynamoStore {
    async fn breaker(&self, name: &str) -> Result<Option<BreakerState>, StoreError> {
        let Some(item) = self.get_own(breaker_key(name)).await? else {
            return Ok(None);
        };
        let num = |k: &str| number(&item, "breaker", k);
        Ok(Some(BreakerState {
            name: name.to_string(),
            down_since: num("down_since")?,
            next_probe: num("next_probe")?,
            probing_until: num("probing_until")?,
            failures: num("failures")? as u32,
            why: item
                .get("why")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
            version: num("version")? as u64,
        }))
    }

    async fn put_breaker(
        &self,
        state: &BreakerState,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("alert_id".to_string(), breaker_key(&state.name)),
            ("down_since".to_string(), n(state.down_since)),
            ("next_probe".to_string(), n(state.next_probe)),
            ("probing_until".to_string(), n(state.probing_until)),
            ("failures".to_string(), n(state.failures)),
            ("why".to_string(), s(&state.why)),
            ("version".to_string(), n(state.version)),
        ]);
        self.put_own(item, expected, None).await
    }
}
