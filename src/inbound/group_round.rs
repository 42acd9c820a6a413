//! The scheduled round's part for alert groups (`domain::grouping`): one
//! log line when it did something, one EMF line (dimension `Outcome` =
//! `groups`): `GroupsOpen` (groups with work left), `GroupParentsCreated`,
//! `GroupUpdatesWritten`, `GroupPrioritiesRaised`, `GroupUpdatesBatched` (joins and resolves waiting
//! for their group's next update), `GroupParentsResolved`, `GroupsIdle`,
//! `GroupErrors`.

use serde_json::{Value, json};

use crate::domain::grouping::{GroupRound, Grouped};

/// Runs one round; its answer's `groups` part.
pub async fn round(groups: &Grouped, metrics: Option<&str>) -> Value {
    let r = groups.round().await;
    if r.parents_created + r.updates_written + r.parents_resolved + r.ended_idle + r.errors > 0 {
        tracing::info!(
            groups = r.groups,
            parents_created = r.parents_created,
            updates_written = r.updates_written,
            priorities_raised = r.priorities_raised,
            parents_resolved = r.parents_resolved,
            ended_idle = r.ended_idle,
            done = r.done,
            batched = r.batched,
            errors = r.errors,
            "group round"
        );
    }
    if let Some(ns) = metrics {
        println!("{}", emf(ns, &r));
    }
    serde_json::to_value(&r).unwrap_or(Value::Null)
}

fn emf(namespace: &str, r: &GroupRound) -> Value {
    let values = [
        ("GroupsOpen", r.groups),
        ("GroupParentsCreated", r.parents_created),
        ("GroupUpdatesWritten", r.updates_written),
        ("GroupPrioritiesRaised", r.priorities_raised),
        ("GroupUpdatesBatched", r.batched),
        ("GroupParentsResolved", r.parents_resolved),
        ("GroupsIdle", r.ended_idle),
        ("GroupErrors", r.errors),
    ];
    let mut doc = json!({"Outcome": "groups"});
    for (name, value) in values {
        doc[name] = json!(value);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    doc["_aws"] = json!({
        "Timestamp": now.as_millis() as u64,
        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Outcome"]],
            "Metrics": values.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"}))
                .collect::<Vec<_>>()}],
    });
    doc
}
