//! The Azure Monitor common alert schema, parsed tolerantly.
//!
//! Published payloads are loose (null severities, numbers where strings are
//! expected, absent or null lists, odd time formats), so every field the
//! pipeline only *shows* is read leniently and kept as text. The two fields
//! the pipeline *decides* on, `alertId` and `monitorCondition`, are strict.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

pub const COMMON_SCHEMA_ID: &str = "azureMonitorCommonAlertSchema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorCondition {
    Fired,
    Resolved,
}

/// `Sev0` (critical) … `Sev4` (verbose); budget alerts send none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Sev0,
    Sev1,
    Sev2,
    Sev3,
    Sev4,
    Unknown,
}

impl Severity {
    pub fn parse(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "sev0" | "0" => Severity::Sev0,
            "sev1" | "1" => Severity::Sev1,
            "sev2" | "2" => Severity::Sev2,
            "sev3" | "3" => Severity::Sev3,
            "sev4" | "4" => Severity::Sev4,
            _ => Severity::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev0 => "Sev0",
            Severity::Sev1 => "Sev1",
            Severity::Sev2 => "Sev2",
            Severity::Sev3 => "Sev3",
            Severity::Sev4 => "Sev4",
            Severity::Unknown => "unknown",
        }
    }
}

/// One alert notification, as the pipeline needs it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub alert_id: String,
    pub condition: MonitorCondition,
    pub alert_rule: Option<String>,
    pub alert_rule_id: Option<String>,
    pub severity: Severity,
    pub signal_type: Option<String>,
    pub monitoring_service: Option<String>,
    pub target_ids: Vec<String>,
    pub configuration_items: Vec<String>,
    pub origin_alert_id: Option<String>,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    pub description: Option<String>,
    pub investigation_link: Option<String>,
    pub target_resource_group: Option<String>,
    pub target_resource_type: Option<String>,
    /// The raw `alertContext`: its shape depends on the monitoring service.
    pub context: Value,
    pub custom_properties: Value,
    key: OnceLock<String>,
}

impl Alert {
    /// The correlation key of `alert_id`, computed once per alert.
    pub fn correlation_key(&self) -> &str {
        self.key
            .get_or_init(|| super::correlation::correlation_key(&self.alert_id))
    }

    /// Activity log alerts (with Service Health and Resource Health) and
    /// budget alerts only ever fire: Azure never sends a Resolved for them.
    pub fn is_stateless(&self) -> bool {
        let service = self.monitoring_service.as_deref().unwrap_or("");
        let signal = self.signal_type.as_deref().unwrap_or("");
        service.starts_with("Activity Log")
            || matches!(
                service,
                "ServiceHealth" | "Resource Health" | "ResourceHealth" | "CostAlerts"
            )
            || matches!(signal, "Activity Log" | "ActivityLog")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("the body is not valid JSON ({0}); send the Azure Monitor common alert schema")]
    NotJson(String),
    #[error(
        "the body is not in the Azure Monitor common alert schema (schemaId is {0}); \
         set \"Enable the common alert schema\" on the action group's Secure Webhook action"
    )]
    NotCommonSchema(String),
    #[error("the alert has no {0}; the common alert schema requires it")]
    Missing(&'static str),
    #[error("data.essentials.monitorCondition is {0:?}; expected \"Fired\" or \"Resolved\"")]
    BadCondition(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "schemaId", default)]
    schema_id: Value,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    essentials: Option<Value>,
    #[serde(rename = "alertContext", default)]
    alert_context: Value,
    #[serde(rename = "customProperties", default)]
    custom_properties: Value,
}

/// Parses a webhook body. Errors say what the sender must fix.
pub fn parse(body: &[u8]) -> Result<Alert, SchemaError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| SchemaError::NotJson(e.to_string()))?;
    if envelope.schema_id.as_str() != Some(COMMON_SCHEMA_ID) {
        let found = match &envelope.schema_id {
            Value::Null => "missing".to_string(),
            other => other.to_string(),
        };
        return Err(SchemaError::NotCommonSchema(found));
    }
    let data = envelope.data.ok_or(SchemaError::Missing("data"))?;
    let e = data
        .essentials
        .ok_or(SchemaError::Missing("data.essentials"))?;
    let alert_id = text(&e, "alertId").ok_or(SchemaError::Missing("data.essentials.alertId"))?;
    let condition = match text(&e, "monitorCondition") {
        None => return Err(SchemaError::Missing("data.essentials.monitorCondition")),
        Some(c) if c.eq_ignore_ascii_case("fired") => MonitorCondition::Fired,
        Some(c) if c.eq_ignore_ascii_case("resolved") => MonitorCondition::Resolved,
        Some(c) => return Err(SchemaError::BadCondition(c)),
    };
    Ok(Alert {
        alert_id,
        condition,
        alert_rule: text(&e, "alertRule"),
        // The docs spell it alertRuleID; one sample spells it alertRuleId.
        alert_rule_id: text(&e, "alertRuleID").or_else(|| text(&e, "alertRuleId")),
        severity: text(&e, "severity").map_or(Severity::Unknown, |s| Severity::parse(&s)),
        signal_type: text(&e, "signalType"),
        monitoring_service: text(&e, "monitoringService"),
        target_ids: texts(&e, "alertTargetIDs"),
        configuration_items: texts(&e, "configurationItems"),
        origin_alert_id: text(&e, "originAlertId"),
        fired_at: text(&e, "firedDateTime"),
        resolved_at: text(&e, "resolvedDateTime"),
        description: text(&e, "description"),
        investigation_link: text(&e, "investigationLink"),
        target_resource_group: text(&e, "targetResourceGroup"),
        target_resource_type: text(&e, "targetResourceType"),
        context: data.alert_context,
        custom_properties: data.custom_properties,
        key: OnceLock::new(),
    })
}

/// A scalar as text: strings trimmed, numbers and booleans printed; null,
/// empty strings, objects and arrays are absent.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn text(obj: &Value, key: &str) -> Option<String> {
    obj.get(key).and_then(scalar)
}

/// A list of scalars; a lone scalar counts as a list of one.
pub fn texts(obj: &Value, key: &str) -> Vec<String> {
    match obj.get(key) {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn numbers_become_text() {
        assert_eq!(scalar(&json!(3)), Some("3".into()));
        assert_eq!(scalar(&json!(true)), Some("true".into()));
        assert_eq!(scalar(&json!("  ")), None);
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

    #[test]
    fn stateless_kinds() {
        let mut alert = parse(&body(json!({"alertId": "a", "monitorCondition": "Fired"}))).unwrap();
        assert!(!alert.is_stateless());
        for service in [
            "Activity Log - Policy",
            "ServiceHealth",
            "Resource Health",
            "CostAlerts",
        ] {
            alert.monitoring_service = Some(service.into());
            assert!(alert.is_stateless(), "{service}");
        }
    }
}
