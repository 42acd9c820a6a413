//! The group key: which alerts belong together, from the fields a rule's
//! `group.by` names. Its id is a digest of a versioned tuple that already
//! holds a connection (the ITSM instance or tenant; empty while a deployment
//! has one), so that several connections can share a store later without a
//! migration: today's ids are the empty connection's.

use serde_json::{Value, json};

use super::group_policy::GroupPolicy;
use super::routing::Facts;
use crate::domain::alert::{Alert, scalar};
use crate::domain::correlation::body_digest;

/// What a grouped alert's draft carries: the group it belongs to, the rules
/// of that group, and how the alert is named in the parent's updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub key: GroupKey,
    pub policy: GroupPolicy,
    /// The alert's configuration item or target name, else its id.
    pub child_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// The routing rule that grouped the alert (`None`: the default).
    pub rule: Option<String>,
    /// Each `by` field and the alert's value for it (`None`: the alert has
    /// none; alerts without a value group together).
    pub values: Vec<(String, Option<String>)>,
}

impl GroupKey {
    pub fn of(rule: Option<&str>, policy: &GroupPolicy, alert: &Alert) -> GroupKey {
        let facts = Facts::of(alert);
        let values = policy
            .by
            .iter()
            .map(|field| (field.clone(), value(field, alert, &facts)))
            .collect();
        GroupKey {
            rule: rule.map(str::to_string),
            values,
        }
    }

    /// `grp-` and 32 hex characters: the same for the same rule and values
    /// whatever their case (Azure spells a resource group both ways).
    pub fn id(&self) -> String {
        let connection = "";
        let values: Vec<Value> = self
            .values
            .iter()
            .map(|(f, v)| json!([f, v.as_deref().map(str::to_lowercase)]))
            .collect();
        let tuple = json!(["group-v1", connection, self.rule, values]);
        format!("grp-{}", body_digest(tuple.to_string().as_bytes()))
    }

    /// `resource_group=rg-prod, alert_rule=vm-cpu-high`: for people.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(f, v)| format!("{f}={}", v.as_deref().unwrap_or("(none)")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn value(field: &str, alert: &Alert, facts: &Facts) -> Option<String> {
    if let Some(key) = field.strip_prefix("custom.") {
        return alert.custom_properties.get(key).and_then(scalar);
    }
    if let Some(name) = field.strip_prefix("dimension.") {
        return dimension(alert.context(), name);
    }
    match field {
        "alert_rule" => alert.alert_rule.clone(),
        "severity" => Some(alert.severity.as_str().to_string()),
        "monitoring_service" => alert.monitoring_service.clone(),
        "signal_type" => alert.signal_type.clone(),
        "subscription" => facts.subscription.clone(),
        "resource_group" => facts.resource_group.clone(),
        "resource_type" => facts.resource_type.clone(),
        "target" => alert.target_ids.first().cloned(),
        _ => None,
    }
}

/// A metric alert's dimension value: `condition.allOf[].dimensions[]`
/// (`{"name": …, "value": …}`), the first criterion that has it.
fn dimension(context: &Value, name: &str) -> Option<String> {
    context
        .pointer("/condition/allOf")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("dimensions")?.as_array())
        .flatten()
        .find(|d| {
            d.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|d| d.get("value").and_then(scalar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::{AlertContext, MonitorCondition};

    fn policy(by: &[&str]) -> GroupPolicy {
        serde_json::from_value(json!({ "by": by })).unwrap()
    }

    fn vm(id: &str, rg: &str, instance: &str) -> Alert {
        let mut a = Alert::new(format!("/alerts/{id}"), MonitorCondition::Fired);
        a.alert_rule = Some("vm-cpu-high".into());
        a.target_ids = vec![format!(
            "/subscriptions/s1/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{id}"
        )];
        a.custom_properties = json!({"team": "compute"});
        a.alert_context = AlertContext::parsed(json!({"condition": {"allOf": [
            {"metricName": "Percentage CPU", "dimensions": [{"name": "Instance", "value": instance}]}
        ]}}));
        a
    }

    #[test]
    fn alerts_of_one_rule_and_group_share_a_key_whatever_the_case() {
        let p = policy(&["alert_rule", "resource_group"]);
        let a = GroupKey::of(Some("vm-cpu"), &p, &vm("vm1", "rg-prod", "i1"));
        let b = GroupKey::of(Some("vm-cpu"), &p, &vm("vm2", "RG-PROD", "i2"));
        let c = GroupKey::of(Some("vm-cpu"), &p, &vm("vm3", "rg-test", "i1"));
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.label(), "alert_rule=vm-cpu-high, resource_group=rg-prod");
        assert!(a.id().starts_with("grp-") && a.id().len() == 36);
    }

    #[test]
    fn the_rule_is_part_of_the_key() {
        let p = policy(&["alert_rule"]);
        let alert = vm("vm1", "rg", "i1");
        assert_ne!(
            GroupKey::of(Some("a"), &p, &alert).id(),
            GroupKey::of(Some("b"), &p, &alert).id()
        );
        assert_ne!(
            GroupKey::of(None, &p, &alert).id(),
            GroupKey::of(Some("a"), &p, &alert).id()
        );
    }

    #[test]
    fn dimensions_custom_properties_and_target_are_read() {
        let p = policy(&[
            "dimension.instance",
            "custom.team",
            "target",
            "custom.absent",
        ]);
        let key = GroupKey::of(None, &p, &vm("vm1", "rg", "i-7"));
        let values: Vec<Option<&str>> = key.values.iter().map(|(_, v)| v.as_deref()).collect();
        assert_eq!(values[0], Some("i-7"));
        assert_eq!(values[1], Some("compute"));
        assert!(values[2].unwrap().ends_with("/virtualMachines/vm1"));
        assert_eq!(values[3], None);
        assert!(key.label().ends_with("custom.absent=(none)"));
    }
}
