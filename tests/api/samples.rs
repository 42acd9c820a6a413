//! Every payload Microsoft publishes for the common alert schema, and every
//! event in events/, parses; each kind is mapped to a readable incident.

use std::path::PathBuf;

use itsm_bridge::domain::alert::{MonitorCondition, Severity};
use itsm_bridge::domain::incident::mapping::{self, SeverityTable};
use itsm_bridge::inbound::common_schema;
use serde_json::{Value, json};

use crate::helpers::{fixture, key_of};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_published_full_payload_parses() {
    let full: Vec<PathBuf> = files("tests/fixtures/azure-samples")
        .into_iter()
        .filter(|p| {
            !name(p).starts_with("ctx-")
                && !name(p).starts_with("legacy2021-ctx")
                && !name(p).contains("essentials")
        })
        .collect();
    assert!(full.len() >= 16, "{full:?}");
    for path in full {
        let bytes = std::fs::read(&path).unwrap();
        let alert = common_schema::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", name(&path)));
        assert!(
            alert.alert_id.starts_with("/subscriptions/"),
            "{}",
            name(&path)
        );
        let draft = mapping::draft(&alert, &SeverityTable::default(), key_of(&alert));
        assert!(
            !draft.short_description.is_empty() && draft.short_description.chars().count() <= 160
        );
        assert_eq!(
            draft.correlation_key.len(),
            itsm_bridge::domain::correlation::KEY_LEN
        );
    }
}

#[test]
fn budget_alerts_with_null_severity_and_a_named_id_parse() {
    let body = fixture("test-budget-fired.json");
    let alert = common_schema::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(alert.severity, Severity::Unknown);
    assert!(alert.is_stateless());
    assert!(alert.alert_id.ends_with("/Test_Alert"));
    let draft = mapping::draft(&alert, &SeverityTable::default(), key_of(&alert));
    assert_eq!(draft.configuration_item, None, "\"budgets\" is not a CI");
    assert!(
        draft
            .short_description
            .contains("budget Test_forcasted_budget"),
        "{}",
        draft.short_description
    );
}

#[test]
fn missing_configuration_items_and_seven_digit_fractions_parse() {
    let alert = common_schema::parse(&std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/azure-samples/legacy2021-common-sample-metric-static-resolved-no-configurationitems.json"),
    ).unwrap())
    .unwrap();
    assert!(alert.configuration_items.is_empty());
    assert_eq!(alert.condition, MonitorCondition::Resolved);
    assert!(
        mapping::target_name(&alert).is_some(),
        "falls back to the target resource"
    );
}

/// Each alertContext Microsoft documents, under the essentials of a fired alert.
#[test]
fn every_documented_alert_context_maps_to_a_what_line() {
    let essentials = fixture("test-metric-static-fired.json")["data"]["essentials"].clone();
    let ctx: Vec<PathBuf> = files("tests/fixtures/azure-samples")
        .into_iter()
        .filter(|p| name(p).starts_with("ctx-") || name(p).starts_with("legacy2021-ctx"))
        .collect();
    assert!(ctx.len() >= 17);
    for path in ctx {
        let fragment: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut e = essentials.clone();
        e["alertRule"] = json!("rule");
        let body = json!({"schemaId": "azureMonitorCommonAlertSchema",
            "data": {"essentials": e, "alertContext": fragment["alertContext"]}});
        let alert = common_schema::parse(body.to_string().as_bytes())
            .unwrap_or_else(|err| panic!("{}: {err}", name(&path)));
        let draft = mapping::draft(&alert, &SeverityTable::default(), key_of(&alert));
        assert!(
            draft.short_description.starts_with("[Sev4] rule: "),
            "{}: no what line in {:?}",
            name(&path),
            draft.short_description
        );
        assert!(draft.description.contains("What: "), "{}", name(&path));
    }
}

#[test]
fn events_are_function_url_events_named_by_kind_and_condition() {
    // sqs-*.json are the worker's events, sync-*.json the sync role's: checked below.
    let events: Vec<PathBuf> = files("events")
        .into_iter()
        .filter(|p| !name(p).starts_with("sqs-") && !name(p).starts_with("sync-"))
        .collect();
    assert!(events.len() >= 22);
    for path in &events {
        let text = std::fs::read_to_string(path).unwrap();
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", name(path)));
        let body = match request.body() {
            lambda_http::Body::Text(t) => t.clone(),
            other => panic!("{}: {other:?}", name(path)),
        };
        let alert =
            common_schema::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", name(path)));
        let expected = if name(path).ends_with("-resolved.json") {
            MonitorCondition::Resolved
        } else {
            MonitorCondition::Fired
        };
        assert_eq!(alert.condition, expected, "{}", name(path));
        if alert.is_stateless() {
            assert!(
                !name(path).ends_with("-resolved.json"),
                "{}: Azure never resolves this kind",
                name(path)
            );
        }
    }
    // Stateful kinds come in pairs sharing an alert id.
    for kind in [
        "metric-static",
        "metric-dynamic",
        "metric-availability",
        "log-v1-log-analytics",
        "log-v1-application-insights",
        "log-v2",
        "prometheus",
    ] {
        let id = |cond: &str| {
            let text = std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("events/{kind}-{cond}.json")),
            )
            .unwrap();
            let event: Value = serde_json::from_str(&text).unwrap();
            let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
            body["data"]["essentials"]["alertId"].clone()
        };
        assert_eq!(id("fired"), id("resolved"), "{kind}");
    }
}

#[test]
fn sqs_events_carry_queued_notifications_of_common_schema_alerts() {
    use itsm_bridge::adapters::queue::Message;
    let events: Vec<PathBuf> = files("events")
        .into_iter()
        .filter(|p| name(p).starts_with("sqs-"))
        .collect();
    assert!(!events.is_empty());
    for path in &events {
        let event: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", name(path)));
        for record in &event.records {
            let m = Message::decode(record.body.as_deref().unwrap()).unwrap();
            let alert = common_schema::parse(m.alert.get().as_bytes()).unwrap();
            assert_eq!(alert.alert_id, m.alert_id, "{}", name(path));
            assert_eq!(
                record.attributes["MessageGroupId"],
                m.group,
                "{}",
                name(path)
            );
            assert_eq!(
                m.group,
                itsm_bridge::domain::correlation::correlation_key(&m.alert_id)
            );
        }
    }
}

#[test]
fn sync_events_are_scheduled_events() {
    let events: Vec<PathBuf> = files("events")
        .into_iter()
        .filter(|p| name(p).starts_with("sync-"))
        .collect();
    assert!(!events.is_empty());
    for path in &events {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(event["detail-type"], "Scheduled Event", "{}", name(path));
        assert_eq!(event["source"], "aws.events", "{}", name(path));
    }
}
