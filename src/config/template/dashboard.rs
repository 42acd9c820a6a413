//! The template's dashboard against the metrics the roles emit: its body is
//! valid JSON once substituted, every widget sits on the 24-column grid, and
//! every metric it reads from the bridge's namespace is one the code writes.

use serde_json::Value;

use super::TEMPLATE;

/// Where the EMF lines are written: every metric name is quoted there.
const EMITTERS: [&str; 3] = [
    include_str!("../../inbound/http/metrics.rs"),
    include_str!("../../inbound/sync.rs"),
    include_str!("../../inbound/group_round.rs"),
];

/// The dashboard's body with each `${…}` of `!Sub` replaced by `NS` for the
/// namespace and `X` for anything else.
fn body() -> Value {
    let mut lines = TEMPLATE
        .lines()
        .skip_while(|l| l.trim() != "DashboardBody: !Sub |")
        .skip(1);
    let mut text = String::new();
    for l in lines.by_ref() {
        if !l.starts_with("        ") {
            break;
        }
        text.push_str(l);
        text.push('\n');
    }
    assert!(!text.is_empty(), "no DashboardBody in the template");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("a closed ${") + at;
        out.push_str(if &rest[at..=end] == "${MetricsNamespace}" {
            "NS"
        } else {
            "X"
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}\n{out}"))
}

#[test]
fn the_dashboard_reads_only_metrics_the_roles_emit() {
    let body = body();
    let widgets = body["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 8, "{widgets:?}");
    let mut ours = 0;
    for w in widgets {
        let (x, width) = (w["x"].as_u64().unwrap(), w["width"].as_u64().unwrap());
        assert!(x + width <= 24, "{w}");
        if w["type"] != "metric" {
            continue;
        }
        let p = &w["properties"];
        assert!(p["title"].is_string() && p["region"] == "X", "{w}");
        for row in p["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            if row[0] == "NS" {
                let name = row[1].as_str().unwrap();
                let quoted = format!("\"{name}\"");
                assert!(
                    EMITTERS.iter().any(|src| src.contains(&quoted)),
                    "the dashboard reads {name}, which no role emits"
                );
                ours += 1;
            }
        }
    }
    assert!(ours > 10, "{ours}");
}

#[test]
fn its_url_is_in_the_outputs() {
    let outputs = TEMPLATE.split("\nOutputs:\n").nth(1).unwrap();
    assert!(
        outputs.contains("DashboardUrl:") && outputs.contains("#dashboards/dashboard/${Dashboard}"),
        "{outputs}"
    );
}
