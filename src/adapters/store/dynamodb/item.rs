//! A correlation record as a DynamoDB item and back: one attribute per
//! field, the ones that are zero or empty left out (records of alerts never
//! queued stay as they were), and no `expires_at` on records that must not
//! expire.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::correlation::{
    AzureSync, CorrelationRecord, IncidentRef, NEVER, QueueProgress, RecordState,
};
use crate::domain::ports::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn to_item(r: &CorrelationRecord) -> Item {
    let state = serde_json::to_value(r.state).expect("state serialises");
    let azure_sent = r.azure.sent.map(|m| {
        let v = serde_json::to_value(m).expect("mark serialises");
        v.as_str().expect("mark is a string").to_string()
    });
    let mut item = HashMap::from([
        ("alert_id".to_string(), s(&r.alert_id)),
        ("correlation_key".to_string(), s(&r.correlation_key)),
        ("itsm".to_string(), s(&r.itsm)),
        (
            "state".to_string(),
            s(state.as_str().expect("state is a string")),
        ),
        ("lease_until".to_string(), n(r.lease_until)),
        ("updated_at".to_string(), n(r.updated_at)),
        ("version".to_string(), n(r.version)),
    ]);
    // No TTL attribute, no deletion: an open incident's record stays.
    if r.expires_at != NEVER {
        item.insert("expires_at".into(), n(r.expires_at));
    }
    // Absent while zero: records of alerts never queued stay as they were.
    for (k, v) in [
        ("queued_seq", r.queued_seq as i64),
        ("delivered_seq", r.delivered_seq as i64),
        ("queued_at", r.queued_at),
        ("azure_lease_until", r.azure.lease_until),
        ("sent_seq", r.queue.sent_seq as i64),
        ("send_lease_until", r.queue.send_lease_until),
        ("refused_seq", r.queue.refused_seq as i64),
        ("refusals", i64::from(r.queue.refusals)),
        ("parked_at", r.queue.parked_at),
        ("look_until", r.look_until),
    ] {
        if v != 0 {
            item.insert(k.into(), n(v));
        }
    }
    let parked = (!r.queue.parked.is_empty()).then(|| {
        let numbers: Vec<String> = r.queue.parked.iter().map(u64::to_string).collect();
        numbers.join(",")
    });
    let optional = [
        ("parked", parked.as_ref()),
        ("queued_digest", r.queued_digest.as_ref()),
        ("azure_sent", azure_sent.as_ref()),
        ("incident_id", r.incident.as_ref().map(|i| &i.id)),
        ("incident_number", r.incident.as_ref().map(|i| &i.number)),
        ("fired_at", r.fired_at.as_ref()),
        ("resolved_at", r.resolved_at.as_ref()),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            item.insert(k.to_string(), s(v));
        }
    }
    item
}

pub(super) fn from_item(item: &Item) -> Result<CorrelationRecord, StoreError> {
    let bad =
        |field: &str| StoreError::Unavailable(format!("correlation item has no valid {field}"));
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| -> Result<i64, StoreError> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(k))
    };
    let state: RecordState = serde_json::from_value(serde_json::Value::String(
        text("state").ok_or_else(|| bad("state"))?,
    ))
    .map_err(|_| bad("state"))?;
    Ok(CorrelationRecord {
        alert_id: text("alert_id").ok_or_else(|| bad("alert_id"))?,
        correlation_key: text("correlation_key").ok_or_else(|| bad("correlation_key"))?,
        itsm: text("itsm").ok_or_else(|| bad("itsm"))?,
        state,
        incident: text("incident_id")
            .zip(text("incident_number"))
            .map(|(id, number)| IncidentRef { id, number }),
        fired_at: text("fired_at"),
        resolved_at: text("resolved_at"),
        lease_until: num("lease_until")?,
        updated_at: num("updated_at")?,
        expires_at: match item.get("expires_at") {
            None => NEVER,
            Some(_) => num("expires_at")?,
        },
        version: num("version")? as u64,
        // Absent on records written before the delivery queue existed.
        queued_seq: num("queued_seq").unwrap_or(0) as u64,
        delivered_seq: num("delivered_seq").unwrap_or(0) as u64,
        queued_at: num("queued_at").unwrap_or(0),
        queued_digest: text("queued_digest"),
        queue: QueueProgress {
            sent_seq: num("sent_seq").unwrap_or(0) as u64,
            send_lease_until: num("send_lease_until").unwrap_or(0),
            refused_seq: num("refused_seq").unwrap_or(0) as u64,
            refusals: num("refusals").unwrap_or(0) as u32,
            parked: match text("parked") {
                Some(list) => list
                    .split(',')
                    .map(|n| n.parse().map_err(|_| bad("parked")))
                    .collect::<Result<_, _>>()?,
                None => Vec::new(),
            },
            parked_at: num("parked_at").unwrap_or(0),
        },
        look_until: num("look_until").unwrap_or(0),
        // Absent until the sync role tells Azure something.
        azure: AzureSync {
            sent: match text("azure_sent") {
                Some(m) => Some(
                    serde_json::from_value(serde_json::Value::String(m))
                        .map_err(|_| bad("azure_sent"))?,
                ),
                None => None,
            },
            lease_until: num("azure_lease_until").unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let record = CorrelationRecord {
            alert_id: "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a".into(),
            correlation_key: "azmon-00".into(),
            itsm: "servicenow".into(),
            state: RecordState::ResolvedWithoutIncident,
            incident: Some(IncidentRef {
                id: "sys".into(),
                number: "INC1".into(),
            }),
            fired_at: None,
            resolved_at: Some("2025-04-15T18:32:12.8515284Z".into()),
            lease_until: 0,
            updated_at: 10,
            expires_at: 20,
            version: 3,
            queued_seq: 0,
            delivered_seq: 0,
            queued_at: 0,
            queued_digest: None,
            queue: Default::default(),
            look_until: 0,
            azure: Default::default(),
        };
        let item = to_item(&record);
        assert_eq!(item["state"], s("resolved_without_incident"));
        assert_eq!(item["expires_at"], n(20));
        assert!(
            !item.contains_key("queued_seq"),
            "no queue fields until queued"
        );
        assert_eq!(from_item(&item).unwrap(), record);
        let queued = CorrelationRecord {
            state: RecordState::Queued,
            queued_seq: 4,
            delivered_seq: 2,
            queued_at: 15,
            queued_digest: Some("0f".into()),
            queue: QueueProgress {
                sent_seq: 3,
                send_lease_until: 16,
                refused_seq: 3,
                refusals: 2,
                parked: vec![3, 5],
                parked_at: 14,
            },
            look_until: 17,
            ..record.clone()
        };
        assert_eq!(from_item(&to_item(&queued)).unwrap(), queued);
        // A record that must not expire carries no TTL attribute at all.
        let open = CorrelationRecord {
            state: RecordState::Open,
            expires_at: NEVER,
            ..record.clone()
        };
        assert!(!to_item(&open).contains_key("expires_at"));
        assert_eq!(from_item(&to_item(&open)).unwrap(), open);
        // Delivered without having been queued here (a redriven message).
        let delivered = CorrelationRecord {
            delivered_seq: 1,
            ..record
        };
        assert_eq!(from_item(&to_item(&delivered)).unwrap(), delivered);
    }
}
