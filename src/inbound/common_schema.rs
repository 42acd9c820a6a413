//! Azure Monitor's common alert schema on the wire, turned into the
//! domain's [`Alert`]. Every inbound role (the webhook today; queued
//! deliveries later) decodes through here.
//!
//! Published payloads are loose (null severities, numbers where strings are
//! expected, absent or null lists, odd time formats), so every field the
//! pipeline only *shows* is read leniently and kept as text. The two fields
//! the pipeline *decides* on, `alertId` and `monitorCondition`, are strict.
//! `alertContext` stays raw until a new incident needs it.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::alert::{Alert, AlertContext, MonitorCondition, Severity};

pub const COMMON_SCHEMA_ID: &str = "azureMonitorCommonAlertSchema";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("the body is not valid JSON ({0}); send the Azure Monitor common alert schema")]
    NotJson(String),
    #[error(
        "the body does not have the shape of the Azure Monitor common alert schema ({0}); \
         data and data.essentials must be objects, each field given once"
    )]
    Shape(String),
    #[error(
        "the body is not in the Azure Monitor common alert schema (schemaId is {0}); \
         set \"Enable the common alert schema\" on the action group's Secure Webhook action"
    )]
    NotCommonSchema(String),
    #[error("the alert has no {0}; the common alert schema requires it")]
    Missing(&'static str),
    #[error("data.essentials.monitorCondition is {0:?}; expected \"Fired\" or \"Resolved\"")]
    BadCondition(String),
    /// Larger than the bridge keeps (store keys and records are bounded):
    /// such a request can never succeed, so it is not worth a retry.
    #[error("{field} is {len} bytes; at most {max} are accepted ({why})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
        why: &'static str,
    },
}

/// An Azure alert id is about 130 characters; a store key must stay far
/// below DynamoDB's 2,048-byte partition key, and both stores take the same.
pub const ALERT_ID_MAX: usize = 1024;
/// A timestamp the record keeps.
pub const TIME_MAX: usize = 100;

fn bounded(
    field: &'static str,
    value: Option<String>,
    max: usize,
    why: &'static str,
) -> Result<Option<String>, SchemaError> {
    match value {
        Some(v) if v.len() > max => Err(SchemaError::TooLong {
            field,
            len: v.len(),
            max,
            why,
        }),
        other => Ok(other),
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "schemaId", default)]
    schema_id: Value,
    #[serde(default)]
    data: Option<Object<Data>>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    essentials: Option<Object<Essentials>>,
    #[serde(rename = "alertContext", default)]
    alert_context: Option<Box<RawValue>>,
    #[serde(rename = "customProperties", default)]
    custom_properties: Value,
}

/// `data.essentials`, read straight into text: no intermediate `Value`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Essentials {
    alert_id: Text,
    monitor_condition: Text,
    alert_rule: Text,
    // The docs spell it alertRuleID; one sample spells it alertRuleId.
    #[serde(rename = "alertRuleID")]
    alert_rule_id: Text,
    #[serde(rename = "alertRuleId")]
    alert_rule_id_lower: Text,
    severity: Text,
    signal_type: Text,
    monitoring_service: Text,
    #[serde(rename = "alertTargetIDs")]
    alert_target_ids: Texts,
    configuration_items: Texts,
    origin_alert_id: Text,
    fired_date_time: Text,
    resolved_date_time: Text,
    description: Text,
    investigation_link: Text,
    target_resource_group: Text,
    target_resource_type: Text,
}

/// Parses a webhook body. Errors say what the sender must fix.
pub fn parse(body: &[u8]) -> Result<Alert, SchemaError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => SchemaError::Shape(e.to_string()),
        _ => SchemaError::NotJson(e.to_string()),
    })?;
    if envelope.schema_id.as_str() != Some(COMMON_SCHEMA_ID) {
        let found = match &envelope.schema_id {
            Value::Null => "missing".to_string(),
            other => other.to_string(),
        };
        return Err(SchemaError::NotCommonSchema(found));
    }
    let Object(data) = envelope.data.ok_or(SchemaError::Missing("data"))?;
    let Object(e) = data
        .essentials
        .ok_or(SchemaError::Missing("data.essentials"))?;
    let alert_id = bounded(
        "data.essentials.alertId",
        e.alert_id.0,
        ALERT_ID_MAX,
        "it is the correlation record's key",
    )?
    .ok_or(SchemaError::Missing("data.essentials.alertId"))?;
    let condition = match e.monitor_condition.0 {
        None => return Err(SchemaError::Missing("data.essentials.monitorCondition")),
        Some(c) if c.eq_ignore_ascii_case("fired") => MonitorCondition::Fired,
        Some(c) if c.eq_ignore_ascii_case("resolved") => MonitorCondition::Resolved,
        Some(c) => return Err(SchemaError::BadCondition(c)),
    };
    Ok(Alert {
        alert_id,
        condition,
        alert_rule: e.alert_rule.0,
        alert_rule_id: e.alert_rule_id.0.or(e.alert_rule_id_lower.0),
        severity: e
            .severity
            .0
            .map_or(Severity::Unknown, |s| Severity::parse(&s)),
        signal_type: e.signal_type.0,
        monitoring_service: e.monitoring_service.0,
        target_ids: e.alert_target_ids.0,
        configuration_items: e.configuration_items.0,
        origin_alert_id: e.origin_alert_id.0,
        fired_at: bounded(
            "data.essentials.firedDateTime",
            e.fired_date_time.0,
            TIME_MAX,
            "a timestamp, kept in the correlation record",
        )?,
        resolved_at: bounded(
            "data.essentials.resolvedDateTime",
            e.resolved_date_time.0,
            TIME_MAX,
            "a timestamp, kept in the correlation record",
        )?,
        description: e.description.0,
        investigation_link: e.investigation_link.0,
        target_resource_group: e.target_resource_group.0,
        target_resource_type: e.target_resource_type.0,
        alert_context: AlertContext::new(data.alert_context),
        custom_properties: data.custom_properties,
    })
}

/// A struct read from a JSON object only: serde's derived structs also
/// accept an array (fields by position), which no sender means.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(Object)
    }
}

/// A field the pipeline shows: any scalar as trimmed text (numbers and
/// booleans printed as JSON prints them); null, "", objects and arrays are
/// absent. The same rule as `domain::alert::scalar`, without building a `Value` first.
#[derive(Default)]
struct Text(Option<String>);

/// A list of [`Text`]s; a lone scalar counts as a list of one.
#[derive(Default)]
struct Texts(Vec<String>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        Ok((!v.is_empty()).then(|| v.to_string()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(|n| n.to_string()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor).map(Text)
    }
}

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list or a scalar")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(item)) = seq.next_element()? {
                    out.extend(item);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                TextVisitor.visit_map(map).map(|_| Vec::new())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                TextVisitor.visit_str(v).map(Vec::from_iter)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                TextVisitor.visit_bool(v).map(Vec::from_iter)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                TextVisitor.visit_i64(v).map(Vec::from_iter)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                TextVisitor.visit_u64(v).map(Vec::from_iter)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                TextVisitor.visit_f64(v).map(Vec::from_iter)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
        }
        d.deserialize_any(ListVisitor).map(Texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::scalar;
    use serde_json::json;

    fn body(essentials: Value) -> Vec<u8> {
        json!({"schemaId": COMMON_SCHEMA_ID, "data": {"essentials": essentials, "alertContext": {}}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn loose_fields_are_tolerated() {
        let alert = parse(&body(json!({
            "alertId": "/subscriptions/s/providers/Microsoft.CostManagement/alerts/Test_Alert",
            "monitorCondition": "Fired",
            "severity": null, "signalType": null, "alertRule": null,
            "configurationItems": null, "alertTargetIDs": "one",
            "firedDateTime": "3/22/2019 1:36:31 PM", "essentialsVersion": 1.0
        })))
        .unwrap();
        assert_eq!(alert.severity, Severity::Unknown);
        assert_eq!(alert.signal_type, None);
        assert!(alert.configuration_items.is_empty());
        assert_eq!(alert.target_ids, vec!["one"]);
        assert_eq!(alert.fired_at.as_deref(), Some("3/22/2019 1:36:31 PM"));
    }

    #[test]
    fn fields_read_as_text_agree_with_scalar() {
        // The typed reader must print exactly what `scalar` prints from a `Value`.
        for value in [
            json!(" padded "),
            json!(""),
            json!(3),
            json!(-7),
            json!(1.0),
            json!(2.5e-3),
            json!(18446744073709551615u64),
            json!(true),
            json!(null),
            json!({"a": [1, {"b": 2}]}),
            json!([1, "two"]),
            json!("caf\u{e9} \u{1F600}"),
        ] {
            let alert = parse(&body(json!({"alertId": "a", "monitorCondition": "Fired",
                "alertRule": value, "configurationItems": value})))
            .unwrap();
            assert_eq!(alert.alert_rule, scalar(&value), "{value}");
            let list: Vec<String> = match &value {
                Value::Array(items) => items.iter().filter_map(scalar).collect(),
                v => scalar(v).into_iter().collect(),
            };
            assert_eq!(alert.configuration_items, list, "{value}");
        }
    }

    #[test]
    fn misshapen_bodies_say_what_is_wrong() {
        let shape = |text: &str| match parse(text.as_bytes()) {
            Err(SchemaError::Shape(m)) => m,
            other => panic!("{text}: {other:?}"),
        };
        assert!(
            shape(r#"{"schemaId":"azureMonitorCommonAlertSchema","data":"x"}"#)
                .contains("invalid type")
        );
        assert!(
            shape(r#"{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":{"alertId":"a","alertId":"b"}}}"#)
                .contains("duplicate field `alertId`")
        );
        assert!(
            shape(r#"{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":["a","Fired"]}}"#)
                .contains("expected an object")
        );
        let err = parse(br#"{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":7}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("must be objects"), "{err}");
    }

    #[test]
    fn the_context_is_kept_raw_and_parsed_on_first_use() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let body = format!(
            r#"{{"schemaId":"{COMMON_SCHEMA_ID}","data":{{"essentials":{{"alertId":"a","monitorCondition":"Fired"}},"alertContext":{{"condition":{{"allOf":[{{"metricName":"cpu"}}]}}}}}}}}"#
        );
        let alert = parse(body.as_bytes()).unwrap();
        assert_eq!(
            alert.context()["condition"]["allOf"][0]["metricName"],
            "cpu"
        );
        // Too deep for a Value (the raw scan keeps no stack): the alert still
        // parses, and would still open an incident, without the context's details.
        let body = body.replace(r#"{"metricName":"cpu"}"#, &deep);
        let alert = parse(body.as_bytes()).unwrap();
        assert_eq!(alert.context(), &Value::Null);
    }

    #[test]
    fn alert_id_and_condition_are_required() {
        assert_eq!(
            parse(&body(json!({"monitorCondition": "Fired"}))).unwrap_err(),
            SchemaError::Missing("data.essentials.alertId")
        );
        assert_eq!(
            parse(&body(json!({"alertId": "a"}))).unwrap_err(),
            SchemaError::Missing("data.essentials.monitorCondition")
        );
        assert_eq!(
            parse(&body(
                json!({"alertId": "a", "monitorCondition": "Acknowledged"})
            ))
            .unwrap_err(),
            SchemaError::BadCondition("Acknowledged".into())
        );
    }

    #[test]
    fn other_schemas_are_named_in_the_error() {
        let err = parse(br#"{"schemaVersion":"1.0","context":{}}"#).unwrap_err();
        assert!(
            err.to_string().contains("Enable the common alert schema"),
            "{err}"
        );
        let err =
            parse(br#"{"schemaId":"Microsoft.Insights/activityLogs","data":{}}"#).unwrap_err();
        assert!(err.to_string().contains("activityLogs"), "{err}");
        assert!(matches!(parse(b"<xml/>"), Err(SchemaError::NotJson(_))));
    }
}
