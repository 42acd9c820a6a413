//! Alert → incident draft: what an operator reads in the service desk.
//! ITSM-neutral; each ITSM adapter turns a draft into its own wire format.

use std::fmt::Write as _;

use serde_json::Value;

use crate::domain::alert::text::{clean, clean_line, continued, inline};
use crate::domain::alert::{Alert, MonitorCondition, Severity, scalar, text};

use crate::domain::incident::group_key::GroupPlan;
pub use crate::domain::incident::severity::SeverityTable;

pub const SHORT_DESCRIPTION_MAX: usize = 160;
pub const DESCRIPTION_MAX: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentDraft {
    /// Stable key derived from the whole alert id; at most 100 characters.
    pub correlation_key: String,
    /// Short human label for the correlation; at most 100 characters.
    pub correlation_label: String,
    pub short_description: String,
    pub description: String,
    pub severity: Severity,
    pub impact: u8,
    pub urgency: u8,
    /// First of `configurationItems`, by name.
    pub configuration_item: Option<String>,
    /// From the routing rules; `None` leaves the ITSM adapter's default.
    pub assignment_group: Option<String>,
    pub category: Option<String>,
    pub caller: Option<String>,
    /// Extra ITSM fields, by the ITSM's own names.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The group the alert joins when a routing rule groups it (`None`:
    /// an incident of its own, as without grouping).
    pub group: Option<Box<GroupPlan>>,
    /// The incident this one is created under (a group's child incident,
    /// `children: incidents`): ServiceNow's `parent_incident`. The other
    /// ITSMs refuse a draft with a parent (start-up refuses the setting).
    pub parent: Option<crate::domain::correlation::IncidentRef>,
}

/// Text the ITSM records when the alert resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub notes: String,
}

/// The incident for `alert`, under `correlation_key` (the state machine
/// decides which key an incident gets: a refire's new incident has its own).
pub fn draft(alert: &Alert, table: &SeverityTable, correlation_key: String) -> IncidentDraft {
    let (impact, urgency) = table.levels(alert.severity);
    let rule = alert.alert_rule.as_deref().unwrap_or("Azure Monitor alert");
    let what = what_happened(alert);
    let mut short = String::with_capacity(SHORT_DESCRIPTION_MAX);
    if alert.severity != Severity::Unknown {
        for part in ["[", alert.severity.as_str(), "] "] {
            short.push_str(part);
        }
    }
    short.push_str(rule);
    if let Some(what) = &what {
        short.push_str(": ");
        short.push_str(what);
    }
    if let Some(target) = target_name(alert) {
        short.push_str(" on ");
        short.push_str(&target);
    }
    IncidentDraft {
        correlation_key,
        correlation_label: correlation_label(alert),
        short_description: clean_line(short, SHORT_DESCRIPTION_MAX),
        description: clean(describe(alert, what.as_deref()), DESCRIPTION_MAX),
        severity: alert.severity,
        impact,
        urgency,
        configuration_item: configuration_items(alert)
            .first()
            .map(|ci| clean_line(ci.as_str(), 255)),
        assignment_group: None,
        category: None,
        caller: None,
        fields: Default::default(),
        group: None,
        parent: None,
    }
}

pub fn resolution(alert: &Alert) -> Resolution {
    let when = alert
        .resolved_at
        .as_deref()
        .map_or(String::new(), |t| format!(" at {}", inline(t)));
    Resolution {
        notes: clean(
            format!(
                "Resolved automatically by itsm-bridge: Azure Monitor reported the alert {} as Resolved{when}.",
                inline(alert.alert_rule.as_deref().unwrap_or(&alert.alert_id))
            ),
            DESCRIPTION_MAX,
        ),
    }
}

/// The journal entry for an alert that fires again after it resolved.
pub fn refire_note(alert: &Alert) -> String {
    clean(
        format!(
            "Azure Monitor reported the alert {} firing again at {} (alert id {}).",
            inline(alert.alert_rule.as_deref().unwrap_or("(no rule)")),
            inline(alert.fired_at.as_deref().unwrap_or("an unknown time")),
            inline(&alert.alert_id)
        ),
        DESCRIPTION_MAX,
    )
}

/// What a person sees next to the key: rule and the id's last segment.
pub fn correlation_label(alert: &Alert) -> String {
    let tail = alert.alert_id.rsplit('/').next().unwrap_or(&alert.alert_id);
    let mut label = String::with_capacity(100);
    label.push_str("Azure Monitor ");
    if let Some(rule) = &alert.alert_rule {
        label.push_str(rule);
        label.push(' ');
    }
    label.push_str(tail);
    clean_line(label, 100)
}

/// Budget alerts list `["budgets"]`: a category, not a resource.
fn configuration_items(alert: &Alert) -> &[String] {
    if alert.monitoring_service.as_deref() == Some("CostAlerts") {
        &[]
    } else {
        &alert.configuration_items
    }
}

/// The resource an operator looks for: the configuration item, else the
/// last segment of the first target resource id.
pub fn target_name(alert: &Alert) -> Option<String> {
    configuration_items(alert).first().cloned().or_else(|| {
        let id = alert.target_ids.first()?;
        id.trim_end_matches('/')
            .rsplit('/')
            .next()
            .map(str::to_string)
    })
}

/// One line saying what was measured or what happened, per monitoring service.
pub fn what_happened(alert: &Alert) -> Option<String> {
    let ctx = alert.context();
    // Not `pointer()`: it allocates to unescape every segment.
    let first = ctx
        .get("condition")
        .and_then(|c| c.get("allOf"))
        .and_then(|all| all.get(0));
    if let Some(c) =
        first.filter(|c| c.get("metricName").is_some() || c.get("searchQuery").is_some())
    {
        let subject = text(c, "metricName")
            .or_else(|| text(c, "metricMeasureColumn"))
            .or_else(|| text(c, "searchQuery").map(|q| format!("query {q}")))?;
        let mut line = subject;
        for key in ["timeAggregation", "operator", "threshold"] {
            if let Some(v) = text(c, key) {
                let _ = write!(line, " {v}");
            }
        }
        if let Some(v) = text(c, "metricValue") {
            let _ = write!(line, " (value {v})");
        }
        return Some(line);
    }
    if let Some(kind) = text(ctx, "AlertType") {
        let count = text(ctx, "ResultCount").unwrap_or_else(|| "?".into());
        return Some(format!("{kind}, {count} results"));
    }
    if let Some(expr) = text(ctx, "expression") {
        let value = text(ctx, "expressionValue").map_or(String::new(), |v| format!(" (value {v})"));
        return Some(format!("{expr}{value}"));
    }
    if let Some(summary) = text(ctx, "DetectionSummary") {
        return Some(summary);
    }
    if let Some(budget) = ctx.get("AlertData").filter(|d| d.is_object()) {
        return Some(format!(
            "budget {} spent {} of {}",
            text(budget, "BudgetName").unwrap_or_default(),
            text(budget, "SpentAmount").unwrap_or_default(),
            text(budget, "BudgetThreshold").unwrap_or_default()
        ));
    }
    let props = ctx.get("properties").unwrap_or(&Value::Null);
    if let Some(status) = text(props, "currentHealthStatus") {
        let was =
            text(props, "previousHealthStatus").map_or(String::new(), |p| format!(" (was {p})"));
        return Some(format!("health {status}{was}"));
    }
    if let Some(title) = text(props, "title") {
        return Some(title);
    }
    let op = text(ctx, "operationName")?;
    Some(match text(ctx, "status") {
        Some(status) => format!("{op} {status}"),
        None => op,
    })
}

/// The bridge's own labels: the only text that starts a line of the
/// description at its left margin (with `Links:`, `Custom properties:` and
/// the `- ` of a link). Alert text never does: see [`continued`].
pub const LABELS: [&str; 16] = [
    "Alert rule",
    "Severity",
    "Condition",
    "What",
    "Monitoring service",
    "Signal type",
    "Fired at",
    "Resolved at",
    "Description",
    "Target resources",
    "Configuration items",
    "Resource group",
    "Resource type",
    "Alert rule id",
    "Alert id",
    "Origin alert id",
];

fn describe(alert: &Alert, what: Option<&str>) -> String {
    let mut d = String::with_capacity(1024);
    let mut line = |label: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            for part in [label, ": ", &continued(v), "\n"] {
                d.push_str(part);
            }
        }
    };
    let [
        rule,
        severity,
        condition,
        what_label,
        service,
        signal,
        fired,
        resolved,
        description,
        targets,
        items,
        group,
        kind,
        rule_id,
        id,
        origin,
    ] = LABELS;
    line(rule, alert.alert_rule.as_deref());
    line(severity, Some(alert.severity.as_str()));
    line(
        condition,
        Some(match alert.condition {
            MonitorCondition::Fired => "Fired",
            MonitorCondition::Resolved => "Resolved",
        }),
    );
    line(what_label, what);
    line(service, alert.monitoring_service.as_deref());
    line(signal, alert.signal_type.as_deref());
    line(fired, alert.fired_at.as_deref());
    line(resolved, alert.resolved_at.as_deref());
    line(description, alert.description.as_deref());
    line(targets, Some(&alert.target_ids.join(", ")));
    // The items the incident is bound to: none for a budget's `["budgets"]`.
    line(items, Some(&configuration_items(alert).join(", ")));
    line(group, alert.target_resource_group.as_deref());
    line(kind, alert.target_resource_type.as_deref());
    line(rule_id, alert.alert_rule_id.as_deref());
    line(id, Some(&alert.alert_id));
    line(origin, alert.origin_alert_id.as_deref());
    // Their names are alert text too: indented under a label of ours.
    if let Value::Object(props) = &alert.custom_properties {
        let props: Vec<(&String, String)> = props
            .iter()
            .filter_map(|(k, v)| scalar(v).map(|v| (k, v)))
            .collect();
        if !props.is_empty() {
            d.push_str("Custom properties:\n");
            for (k, v) in props {
                for part in ["  ", &inline(k), ": ", &continued(&v), "\n"] {
                    d.push_str(part);
                }
            }
        }
    }
    let links = links(alert);
    if !links.is_empty() {
        d.push_str("Links:\n");
        for link in links {
            for part in ["- ", &inline(link), "\n"] {
                d.push_str(part);
            }
        }
    }
    d
}

/// Every http(s) link the alert carries, in order, without repeats.
pub fn links(alert: &Alert) -> Vec<&str> {
    let mut out: Vec<&str> = alert
        .investigation_link
        .iter()
        .map(String::as_str)
        .collect();
    collect_links(alert.context(), &mut out);
    if let Some(custom) = alert.custom_properties.get("links") {
        collect_links(custom, &mut out);
    }
    out.retain(|l| is_link(l));
    let mut seen = std::collections::HashSet::new();
    out.retain(|l| seen.insert(*l));
    out
}

fn is_link(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

fn collect_links<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if is_link(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_links(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_links(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::AlertContext;
    use serde_json::json;

    fn fired(id: &str) -> Alert {
        Alert::new(id, MonitorCondition::Fired)
    }

    fn draft(alert: &Alert, table: &SeverityTable) -> IncidentDraft {
        super::draft(alert, table, "azmon-test".into())
    }

    #[test]
    fn metric_alert_says_what_was_measured() {
        let a = Alert {
            alert_rule: Some("cpu-high".into()),
            severity: Severity::Sev1,
            configuration_items: vec!["vm-web-01".into()],
            alert_context: AlertContext::parsed(
                json!({"condition": {"allOf": [{"metricName": "Percentage CPU", "operator": "GreaterThan",
                       "threshold": "80", "timeAggregation": "Average", "metricValue": 91.5}]}}),
            ),
            ..fired("/x/alerts/1")
        };
        let d = draft(&a, &SeverityTable::default());
        assert_eq!(
            d.short_description,
            "[Sev1] cpu-high: Percentage CPU Average GreaterThan 80 (value 91.5) on vm-web-01"
        );
        assert_eq!((d.impact, d.urgency), (1, 2));
        assert_eq!(d.configuration_item.as_deref(), Some("vm-web-01"));
        assert!(d.description.contains("Alert id: /x/alerts/1"));
    }

    #[test]
    fn long_and_hostile_text_is_cut_and_cleaned() {
        let a = Alert {
            alert_rule: Some("r\u{0}\u{7}".repeat(200)),
            ..fired("a")
        };
        let d = draft(&a, &SeverityTable::default());
        assert_eq!(d.short_description.chars().count(), SHORT_DESCRIPTION_MAX);
        assert!(!d.short_description.chars().any(|c| c.is_control()));
    }

    #[test]
    fn severity_table_overrides_and_rejects() {
        let t = SeverityTable::servicenow()
            .with("Sev4=2/2, unknown=1/3")
            .unwrap();
        assert_eq!(t.levels(Severity::Sev4), (2, 2));
        assert_eq!(t.levels(Severity::Unknown), (1, 3));
        assert_eq!(t.levels(Severity::Sev0), (1, 1));
        for bad in ["Sev9=1/1", "Sev1=0/1", "Sev1=1", "Sev1", "Sev1=4/4"] {
            assert!(SeverityTable::servicenow().with(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SeverityTable::bmc()
                .with("Sev1=4/4")
                .unwrap()
                .levels(Severity::Sev1),
            (4, 4)
        );
    }

    #[test]
    fn links_are_collected_once() {
        let a = Alert {
            investigation_link: Some("https://i".into()),
            alert_context: AlertContext::parsed(
                json!({"LinkToSearchResults": "https://l", "nested": [{"u": "https://l"}, {"u": "not a link"}]}),
            ),
            ..fired("a")
        };
        assert_eq!(links(&a), vec!["https://i", "https://l"]);
    }

    #[test]
    fn a_budget_claims_no_configuration_item() {
        let a = Alert {
            monitoring_service: Some("CostAlerts".into()),
            configuration_items: vec!["budgets".into()],
            ..fired("/subscriptions/s/providers/Microsoft.CostManagement/alerts/b")
        };
        let d = draft(&a, &SeverityTable::default());
        assert_eq!(d.configuration_item, None);
        assert!(
            !d.description.contains("Configuration items"),
            "{}",
            d.description
        );
        let vm = Alert {
            configuration_items: vec!["vm-1".into()],
            ..fired("a")
        };
        let d = draft(&vm, &SeverityTable::default());
        assert!(d.description.contains("Configuration items: vm-1\n"));
    }

    #[test]
    fn the_label_names_rule_and_id_tail_on_one_line() {
        let a = Alert {
            alert_rule: Some("cpu\nhigh".into()),
            ..fired("/subscriptions/s/alerts/0f1e")
        };
        assert_eq!(correlation_label(&a), "Azure Monitor cpu high 0f1e");
        assert_eq!(
            draft(&a, &SeverityTable::default()).correlation_key,
            "azmon-test"
        );
    }
}
