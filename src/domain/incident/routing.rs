//! Routing rules and templates: which assignment group, category, caller,
//! impact/urgency and extra fields an alert's incident gets, and how its
//! texts read. First matching rule wins; the default applies otherwise.
//!
//! ```json
//! {"rules": [{"name": "prod-sql",
//!             "match": {"alert_rule": "sql-*", "severity": ["Sev0", "Sev1"], "resource_group": "prod-*",
//!                       "custom_properties": {"team": "dba"}},
//!             "set": {"assignment_group": "DBA", "impact": 1, "urgency": 1, "fields": {"u_env": "prod"}}}],
//!  "default": {"assignment_group": "Cloud Operations"},
//!  "templates": {"short_description": "[{severity}] {rule}: {what} on {target}"}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::alert::text::{clean, clean_line, continued, inline};
use crate::domain::alert::{Alert, MonitorCondition};
use crate::domain::incident::group_key::{GroupKey, GroupPlan};
use crate::domain::incident::group_policy::GroupPolicy;
use crate::domain::incident::mapping::{
    self, DESCRIPTION_MAX, IncidentDraft, SHORT_DESCRIPTION_MAX,
};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    default: Effects,
    #[serde(default)]
    templates: Templates,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    name: String,
    #[serde(rename = "match", default)]
    when: Match,
    set: Effects,
    /// Alerts this rule matches share parent incidents by this policy.
    group: Option<GroupPolicy>,
}

/// Every matcher given must match; a list matches any of its values; `*`
/// matches any run of characters; case is ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Match {
    alert_rule: Option<OneOrMany>,
    severity: Option<OneOrMany>,
    monitoring_service: Option<OneOrMany>,
    subscription: Option<OneOrMany>,
    resource_group: Option<OneOrMany>,
    resource_type: Option<OneOrMany>,
    #[serde(default)]
    custom_properties: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// What a rule sets on the incident.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effects {
    pub assignment_group: Option<String>,
    pub category: Option<String>,
    pub caller: Option<String>,
    pub impact: Option<u8>,
    pub urgency: Option<u8>,
    /// Extra ITSM fields, by the ITSM's own field names.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Grouping for alerts no rule matched (`default` only; a rule's
    /// `group` sits beside its `set`).
    pub group: Option<GroupPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Templates {
    short_description: Option<String>,
    description: Option<String>,
}

/// The placeholders a template may use; `{custom.KEY}` reads a custom property.
pub const PLACEHOLDERS: [&str; 13] = [
    "rule",
    "severity",
    "what",
    "target",
    "monitoring_service",
    "condition",
    "alert_id",
    "subscription",
    "resource_group",
    "resource_type",
    "description",
    "fired_at",
    "signal_type",
];

impl Routing {
    /// Parses and checks a rules document; errors name the line, column or field.
    pub fn parse(json: &str, max_level: u8) -> Result<Routing, String> {
        let routing: Routing = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for (i, rule) in routing.rules.iter().enumerate() {
            let named = |e: String| format!("rules[{i}] ({}): {e}", rule.name);
            rule.set.check(max_level).map_err(named)?;
            if rule.set.group.is_some() {
                return Err(named(
                    "set.group: put group beside set, not inside it".into(),
                ));
            }
            if let Some(g) = &rule.group {
                g.check().map_err(named)?;
            }
        }
        routing
            .default
            .check(max_level)
            .and_then(|()| {
                routing
                    .default
                    .group
                    .as_ref()
                    .map_or(Ok(()), GroupPolicy::check)
            })
            .map_err(|e| format!("default: {e}"))?;
        for (name, template) in [
            ("short_description", &routing.templates.short_description),
            ("description", &routing.templates.description),
        ] {
            if let Some(t) = template {
                check_template(t).map_err(|e| format!("templates.{name}: {e}"))?;
            }
        }
        Ok(routing)
    }

    /// Refuses grouping that `itsm_kind` cannot do (children as incidents
    /// of their own need ServiceNow's `parent_incident`).
    pub fn check_groups_for(&self, itsm_kind: &str) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(g) = &rule.group {
                g.check_for(itsm_kind)
                    .map_err(|e| format!("rules[{i}] ({}): {e}", rule.name))?;
            }
        }
        match &self.default.group {
            Some(g) => g.check_for(itsm_kind).map_err(|e| format!("default: {e}")),
            None => Ok(()),
        }
    }

    /// Whether any rule, or the default, makes each grouped alert an
    /// incident of its own under the group's parent.
    pub fn child_incidents(&self) -> bool {
        let incidents = |g: &Option<GroupPolicy>| {
            g.as_ref()
                .is_some_and(|g| g.children == super::group_policy::Children::Incidents)
        };
        incidents(&self.default.group) || self.rules.iter().any(|r| incidents(&r.group))
    }

    /// Whether any rule, or the default, groups alerts.
    pub fn groups(&self) -> bool {
        self.default.group.is_some() || self.rules.iter().any(|r| r.group.is_some())
    }

    /// The rule that applies (`None`: the default) and the draft it produces.
    pub fn apply(&self, alert: &Alert, mut draft: IncidentDraft) -> (Option<&str>, IncidentDraft) {
        // Only rules and templates read the facts: none, no cost.
        let facts = std::cell::OnceCell::new();
        let facts = || facts.get_or_init(|| Facts::of(alert));
        let rule = self.rules.iter().find(|r| r.when.matches(alert, facts()));
        let effects = rule.map_or(&self.default, |r| &r.set);
        let pick = |mine: &Option<String>, fallback: &Option<String>| {
            mine.clone().or_else(|| fallback.clone())
        };
        draft.assignment_group = pick(&effects.assignment_group, &self.default.assignment_group);
        draft.category = pick(&effects.category, &self.default.category);
        draft.caller = pick(&effects.caller, &self.default.caller);
        draft.impact = effects
            .impact
            .or(self.default.impact)
            .unwrap_or(draft.impact);
        draft.urgency = effects
            .urgency
            .or(self.default.urgency)
            .unwrap_or(draft.urgency);
        draft.fields = self.default.fields.clone();
        draft.fields.extend(effects.fields.clone());
        if let Some(t) = &self.templates.short_description {
            draft.short_description =
                clean_line(render(t, alert, facts(), false), SHORT_DESCRIPTION_MAX);
        }
        if let Some(t) = &self.templates.description {
            draft.description = clean(render(t, alert, facts(), true), DESCRIPTION_MAX);
        }
        // A matching rule's own group, or none; the default's only when no rule matched.
        let group = rule.map_or(self.default.group.as_ref(), |r| r.group.as_ref());
        let name = rule.map(|r| r.name.as_str());
        draft.group = group.map(|policy| {
            Box::new(GroupPlan {
                key: GroupKey::of(name, policy, alert),
                policy: policy.clone(),
                child_name: mapping::target_name(alert).unwrap_or_else(|| alert.alert_id.clone()),
            })
        });
        (name, draft)
    }
}

impl Effects {
    fn check(&self, max_level: u8) -> Result<(), String> {
        for (name, level) in [("impact", self.impact), ("urgency", self.urgency)] {
            if let Some(l) = level
                && !(1..=max_level).contains(&l)
            {
                return Err(format!(
                    "set.{name} is {l}; this ITSM's scale is 1 to {max_level}"
                ));
            }
        }
        Ok(())
    }
}

impl OneOrMany {
    fn any(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        match self {
            OneOrMany::One(p) => glob(p, value),
            OneOrMany::Many(ps) => ps.iter().any(|p| glob(p, value)),
        }
    }
}

impl Match {
    fn matches(&self, alert: &Alert, facts: &Facts) -> bool {
        let check =
            |m: &Option<OneOrMany>, value: Option<&str>| m.as_ref().is_none_or(|m| m.any(value));
        check(&self.alert_rule, alert.alert_rule.as_deref())
            && check(&self.severity, Some(alert.severity.as_str()))
            && check(
                &self.monitoring_service,
                alert.monitoring_service.as_deref(),
            )
            && check(&self.subscription, facts.subscription.as_deref())
            && check(&self.resource_group, facts.resource_group.as_deref())
            && check(&self.resource_type, facts.resource_type.as_deref())
            && self.custom_properties.iter().all(|(k, m)| {
                m.any(
                    alert
                        .custom_properties
                        .get(k)
                        .and_then(crate::domain::alert::scalar)
                        .as_deref(),
                )
            })
    }
}

/// Subscription, resource group and type: from the essentials when given,
/// else read off the first target resource id.
pub(crate) struct Facts {
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub resource_type: Option<String>,
}

impl Facts {
    pub fn of(alert: &Alert) -> Facts {
        let id = alert
            .target_ids
            .first()
            .map(String::as_str)
            .unwrap_or(&alert.alert_id);
        let parts: Vec<&str> = id.split('/').collect();
        let after = |key: &str| {
            parts
                .iter()
                .position(|p| p.eq_ignore_ascii_case(key))
                .and_then(|i| parts.get(i + 1))
                .map(|s| s.to_string())
        };
        let resource_type = parts
            .iter()
            .position(|p| p.eq_ignore_ascii_case("providers"))
            .and_then(|i| Some(format!("{}/{}", parts.get(i + 1)?, parts.get(i + 2)?)));
        Facts {
            subscription: after("subscriptions"),
            resource_group: alert
                .target_resource_group
                .clone()
                .or_else(|| after("resourcegroups")),
            resource_type: alert.target_resource_type.clone().or(resource_type),
        }
    }
}

/// Case-insensitive wildcard match: `*` stands for any run of characters.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_lowercase(), value.to_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == v;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !v.starts_with(first)
        || !v[first.len()..].ends_with(last)
        || v.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &v[first.len()..v.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("a `{` is not closed")? + open;
        let name = &rest[open + 1..close];
        if !(PLACEHOLDERS.contains(&name)
            || name.strip_prefix("custom.").is_some_and(|k| !k.is_empty()))
        {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}, custom.KEY",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

/// Fills a checked template; a value the alert lacks becomes empty.
/// `t` with its placeholders filled in. Alert text in a `multiline`
/// template continues on indented lines; elsewhere its line breaks are spaces.
fn render(t: &str, alert: &Alert, facts: &Facts, multiline: bool) -> String {
    let value = |name: &str| -> String {
        match name {
            "rule" => alert.alert_rule.clone(),
            "severity" => Some(alert.severity.as_str().to_string()),
            "what" => mapping::what_happened(alert),
            "target" => mapping::target_name(alert),
            "monitoring_service" => alert.monitoring_service.clone(),
            "condition" => Some(match alert.condition {
                MonitorCondition::Fired => "Fired".into(),
                MonitorCondition::Resolved => "Resolved".into(),
            }),
            "alert_id" => Some(alert.alert_id.clone()),
            "subscription" => facts.subscription.clone(),
            "resource_group" => facts.resource_group.clone(),
            "resource_type" => facts.resource_type.clone(),
            "description" => alert.description.clone(),
            "fired_at" => alert.fired_at.clone(),
            "signal_type" => alert.signal_type.clone(),
            custom => custom.strip_prefix("custom.").and_then(|k| {
                alert
                    .custom_properties
                    .get(k)
                    .and_then(crate::domain::alert::scalar)
            }),
        }
        .unwrap_or_default()
    };
    let mut out = String::with_capacity(t.len() + 64);
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
        let v = value(&rest[open + 1..close]);
        out.push_str(&if multiline { continued(&v) } else { inline(&v) });
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::Severity;
    use crate::domain::incident::mapping::{SeverityTable, draft};
    use serde_json::{Value, json};

    fn alert(rule: &str, severity: &str, custom: Value) -> Alert {
        Alert {
            alert_rule: Some(rule.into()),
            severity: Severity::parse(severity),
            monitoring_service: Some("Platform".into()),
            target_ids: vec![
                "/subscriptions/sub-1/resourceGroups/prod-sql/providers/Microsoft.Sql/servers/db1"
                    .into(),
            ],
            configuration_items: vec!["db1".into()],
            fired_at: Some("2025-04-15T18:17:12Z".into()),
            custom_properties: custom,
            ..Alert::new(
                "/subscriptions/sub-1/providers/Microsoft.AlertsManagement/alerts/a1",
                MonitorCondition::Fired,
            )
        }
    }

    fn route(rules: Value, a: &Alert) -> (Option<String>, IncidentDraft) {
        let routing = Routing::parse(&rules.to_string(), 3).unwrap();
        let (name, d) = routing.apply(a, draft(a, &SeverityTable::default(), "azmon-k".into()));
        (name.map(str::to_string), d)
    }

    #[test]
    fn first_match_wins_then_the_default() {
        let rules = json!({"rules": [
            {"name": "sql", "match": {"alert_rule": "sql-*"}, "set": {"assignment_group": "DBA"}},
            {"name": "all-sev1", "match": {"severity": "Sev1"}, "set": {"assignment_group": "Sev1 desk", "category": "Urgent"}}],
            "default": {"assignment_group": "Cloud Operations", "category": "Infrastructure"}});
        let (name, d) = route(rules.clone(), &alert("sql-cpu", "Sev1", json!({})));
        assert_eq!(
            (
                name.as_deref(),
                d.assignment_group.as_deref(),
                d.category.as_deref()
            ),
            (Some("sql"), Some("DBA"), Some("Infrastructure"))
        );
        let (name, d) = route(rules.clone(), &alert("web-cpu", "Sev1", json!({})));
        assert_eq!(
            (name.as_deref(), d.assignment_group.as_deref()),
            (Some("all-sev1"), Some("Sev1 desk"))
        );
        let (name, d) = route(rules, &alert("web-cpu", "Sev3", json!({})));
        assert_eq!(
            (name, d.assignment_group.as_deref()),
            (None, Some("Cloud Operations"))
        );
    }

    #[test]
    fn every_matcher() {
        let a = alert("sql-cpu", "Sev2", json!({"team": "dba", "env": "prod"}));
        let hit = |m: Value| {
            route(json!({"rules": [{"name": "r", "match": m, "set": {}}]}), &a)
                .0
                .is_some()
        };
        assert!(hit(json!({"alert_rule": "SQL-*"})) && !hit(json!({"alert_rule": "web-*"})));
        assert!(hit(json!({"severity": ["Sev1", "Sev2"]})) && !hit(json!({"severity": "Sev0"})));
        assert!(
            hit(json!({"monitoring_service": "platform"}))
                && !hit(json!({"monitoring_service": "Log*"}))
        );
        assert!(hit(json!({"subscription": "sub-1"})) && !hit(json!({"subscription": "sub-2"})));
        assert!(
            hit(json!({"resource_group": "prod-*"})) && !hit(json!({"resource_group": "dev-*"}))
        );
        assert!(
            hit(json!({"resource_type": "microsoft.sql/servers"}))
                && !hit(json!({"resource_type": "*/virtualMachines"}))
        );
        assert!(
            hit(json!({"custom_properties": {"team": "dba", "env": "p*"}}))
                && !hit(json!({"custom_properties": {"team": "web"}}))
        );
        assert!(
            !hit(json!({"custom_properties": {"owner": "*"}})),
            "an absent property matches nothing"
        );
        assert!(hit(json!({})), "no matcher: matches everything");
    }

    #[test]
    fn overrides_fields_and_templates() {
        let rules = json!({"rules": [{"name": "r", "match": {}, "set": {"impact": 1, "urgency": 1, "caller": "svc", "fields": {"u_env": "prod"}}}],
            "default": {"fields": {"u_source": "azure", "u_env": "unknown"}},
            "templates": {"short_description": "{severity} {rule} on {target} in {resource_group} for {custom.team}{custom.none}",
                          "description": "Rule {rule}\nAlert {alert_id}"}});
        let (_, d) = route(rules, &alert("sql-cpu", "Sev4", json!({"team": "dba"})));
        assert_eq!(
            (d.impact, d.urgency, d.caller.as_deref()),
            (1, 1, Some("svc"))
        );
        assert_eq!(
            d.fields,
            BTreeMap::from([
                ("u_env".into(), "prod".into()),
                ("u_source".into(), "azure".into())
            ])
        );
        assert_eq!(
            d.short_description,
            "Sev4 sql-cpu on db1 in prod-sql for dba"
        );
        assert_eq!(
            d.description,
            "Rule sql-cpu\nAlert /subscriptions/sub-1/providers/Microsoft.AlertsManagement/alerts/a1"
        );
        let long = json!({"templates": {"short_description": "{description}{alert_id}{alert_id}"}});
        let (_, d) = route(long, &alert(&"x".repeat(300), "Sev4", json!({})));
        assert!(d.short_description.chars().count() <= SHORT_DESCRIPTION_MAX);
    }

    #[test]
    fn bad_documents_say_where() {
        let err = Routing::parse(
            "{\"rules\": [{\"name\": \"r\", \"set\": {\"assigment_group\": \"x\"}}]}",
            3,
        )
        .unwrap_err();
        assert!(
            err.contains("unknown field `assigment_group`") && err.contains("line 1 column"),
            "{err}"
        );
        let err = Routing::parse(
            "{\n  \"rules\": [\n    {\"name\": \"r\", \"set\": {}\n  ]\n}",
            3,
        )
        .unwrap_err();
        assert!(err.contains("line 4"), "{err}");
        let err =
            Routing::parse(r#"{"rules": [{"name": "big", "set": {"impact": 4}}]}"#, 3).unwrap_err();
        assert!(err.contains("rules[0] (big): set.impact is 4"), "{err}");
        let err = Routing::parse(
            r#"{"templates": {"short_description": "{rule} {colour}"}}"#,
            3,
        )
        .unwrap_err();
        assert!(
            err.contains("templates.short_description: unknown placeholder {colour}"),
            "{err}"
        );
        assert!(Routing::parse(r#"{"templates": {"description": "{rule"}}"#, 3).is_err());
        assert!(
            Routing::parse(r#"{"rules": [{"name": "no set"}]}"#, 3)
                .unwrap_err()
                .contains("missing field `set`")
        );
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("a*c", "abc") && glob("a*c", "ac") && glob("*", "") && glob("*b*", "abc"));
        assert!(!glob("a*c", "ab") && !glob("abc", "abcd") && !glob("a*b*c", "acb"));
    }
}
