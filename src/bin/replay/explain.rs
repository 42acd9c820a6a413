//! `replay --explain`: which routing rule an alert matched and the fields
//! it produced, for Jira the issue fields its settings make of them, and
//! for a grouped alert its group key and whether it would open a group or
//! join which.

use itsm_bridge::config::Config;
use itsm_bridge::inbound::http;
use serde_json::{Value, json};

/// Which routing rule the event's alert matched and the fields it produced
/// (for Jira, also the issue fields its settings make of them).
pub async fn explain(app: &http::App, config: &Config, event: &Value) -> Value {
    let body = event["body"].as_str().unwrap_or_default();
    let Ok(alert) = itsm_bridge::inbound::common_schema::parse(body.as_bytes()) else {
        return json!({"error": "not a common-schema alert"});
    };
    let (rule, d) = app.bridge.draft(&alert);
    let jira = jira_fields(config).map(|fields| {
        use itsm_bridge::adapters::wire::WireFormat;
        let resolve = json!({"transition": fields.resolve_transition,
            "resolution": fields.resolution, "reopen_transition": fields.reopen_transition});
        let create = itsm_bridge::adapters::jira::JiraFormat { fields }.create(&d);
        let mut issue = create.body.unwrap_or_default()["fields"].take();
        // The description is in the request replay shows; here, the settings' part.
        issue.as_object_mut().map(|o| o.remove("description"));
        issue["on_resolve"] = resolve;
        issue
    });
    let mut out = json!({
        "rule": rule.unwrap_or("(default)"),
        "short_description": d.short_description,
        "assignment_group": d.assignment_group,
        "category": d.category,
        "caller": d.caller,
        "impact": d.impact,
        "urgency": d.urgency,
        "configuration_item": d.configuration_item,
        "fields": d.fields,
    });
    if let Some(issue) = jira {
        out["jira"] = issue;
    }
    if let (Some(plan), Some(groups)) = (&d.group, &app.groups) {
        let would = groups
            .preview(plan, &d.correlation_key)
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"));
        out["group"] = json!({"key": plan.key.id(), "by": plan.key.label(),
            "child": plan.child_name, "would": would});
    }
    out
}

fn jira_fields(config: &Config) -> Option<itsm_bridge::adapters::jira::JiraFields> {
    use itsm_bridge::config::{DryRunFormat, ItsmConfig};
    match &config.itsm {
        ItsmConfig::Jira(jira, _) => Some(jira.fields.clone()),
        ItsmConfig::DryRun(DryRunFormat::Jira(fields)) => Some(fields.clone()),
        _ => None,
    }
}
