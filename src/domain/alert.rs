//! One Azure Monitor alert notification, as the domain sees it: a leaf
//! that every other part of the domain reads. The inbound side turns Azure's
//! wire format (the common alert schema) into it.

pub mod text;

use std::sync::OnceLock;

use serde_json::Value;
use serde_json::value::RawValue;

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
    /// `alertContext`, whose shape depends on the monitoring service.
    pub alert_context: AlertContext,
    pub custom_properties: Value,
}

/// `alertContext` kept as received and parsed on first use: duplicates and
/// resolves, most of the traffic, never need it.
#[derive(Debug, Clone, Default)]
pub struct AlertContext {
    raw: Option<Box<RawValue>>,
    parsed: OnceLock<Value>,
}

impl AlertContext {
    pub fn new(raw: Option<Box<RawValue>>) -> AlertContext {
        AlertContext {
            raw,
            parsed: OnceLock::new(),
        }
    }

    /// A context already parsed (tests, and callers that hold a `Value`).
    pub fn parsed(value: Value) -> AlertContext {
        AlertContext {
            raw: None,
            parsed: OnceLock::from(value),
        }
    }

    /// The parsed value. The only way this parse can fail, past the
    /// decoder's checks, is nesting deeper than serde_json allows; the
    /// incident then goes without the context's details rather than not at all.
    pub fn get(&self) -> &Value {
        self.parsed.get_or_init(|| {
            self.raw
                .as_ref()
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or(Value::Null)
        })
    }
}

impl Alert {
    /// An alert with only the two fields the pipeline decides on; the
    /// decoder and tests fill in the rest.
    pub fn new(alert_id: impl Into<String>, condition: MonitorCondition) -> Alert {
        Alert {
            alert_id: alert_id.into(),
            condition,
            alert_rule: None,
            alert_rule_id: None,
            severity: Severity::Unknown,
            signal_type: None,
            monitoring_service: None,
            target_ids: Vec::new(),
            configuration_items: Vec::new(),
            origin_alert_id: None,
            fired_at: None,
            resolved_at: None,
            description: None,
            investigation_link: None,
            target_resource_group: None,
            target_resource_type: None,
            alert_context: AlertContext::default(),
            custom_properties: Value::Null,
        }
    }

    /// `alertContext`, parsed on first use.
    pub fn context(&self) -> &Value {
        self.alert_context.get()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_become_text() {
        assert_eq!(scalar(&json!(3)), Some("3".into()));
        assert_eq!(scalar(&json!(true)), Some("true".into()));
        assert_eq!(scalar(&json!("  ")), None);
    }

    #[test]
    fn the_context_is_parsed_on_first_use_and_null_when_absent() {
        let raw = RawValue::from_string(r#"{"a":[1]}"#.into()).unwrap();
        assert_eq!(AlertContext::new(Some(raw)).get()["a"][0], 1);
        assert_eq!(AlertContext::new(None).get(), &Value::Null);
        assert_eq!(AlertContext::parsed(json!({"b": 2})).get()["b"], 2);
    }

    #[test]
    fn stateless_kinds() {
        let mut alert = Alert::new("a", MonitorCondition::Fired);
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
