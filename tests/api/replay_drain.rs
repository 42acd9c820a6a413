//! `replay --drain` never loses queued work: a dry run shows what it would
//! send and consumes nothing; parked notifications come back on request.

use std::path::PathBuf;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::fakes::{Fake, Vendor};
use crate::helpers::{SN_PASSWORD, SN_USER};
use crate::replay_roles::{json_lines, run};

/// Runs replay against `uri` (a fake ServiceNow) with the state in `state`.
async fn replay(state: PathBuf, uri: String, args: &'static [&'static str]) -> (i32, Vec<Value>) {
    tokio::task::spawn_blocking(move || {
        let (code, stdout, stderr) = run(
            &state,
            &[&["--json", "--itsm", "servicenow"], args].concat(),
            &[
                ("SERVICENOW_INSTANCE_URL", &uri),
                ("SERVICENOW_USERNAME", SN_USER),
                ("SERVICENOW_PASSWORD", SN_PASSWORD),
                ("ITSM_TIMEOUT_MS", "300"),
                ("INLINE_BUDGET_MS", "500"),
            ],
        );
        assert!(code != 2, "{stdout}\n{stderr}");
        (code, json_lines(&stdout))
    })
    .await
    .unwrap()
}

fn results(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l["result"].as_str()).collect()
}

#[tokio::test]
async fn a_dry_run_drain_shows_what_it_would_send_and_leaves_everything_queued() {
    let (servicenow, fake) = Fake::serve(Vendor::ServiceNow).await;
    let state = tempfile::tempdir().unwrap();
    let (path, uri) = (state.path().to_path_buf(), servicenow.uri());
    fake.set_down(true);
    let (code, lines) = replay(
        path.clone(),
        uri.clone(),
        &[
            "--send",
            "events/log-v2-fired.json",
            "events/log-v2-resolved.json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    fake.set_down(false);
    // Twice: the first dry run consumed nothing the second could not see.
    for _ in 0..2 {
        let (code, lines) = replay(path.clone(), uri.clone(), &["--drain"]).await;
        assert_eq!(code, 0, "{lines:?}");
        assert_eq!(
            results(&lines),
            ["would_deliver", "would_deliver"],
            "{lines:?}"
        );
        // It looks first (the failed inline attempt may have created it), then creates.
        let methods: Vec<&str> = lines[0]["itsm_requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["method"].as_str().unwrap())
            .collect();
        assert_eq!(methods, ["GET", "POST"], "{lines:?}");
        assert_eq!(lines[1]["outcome"], "resolved", "{lines:?}");
        assert!(fake.incidents().is_empty(), "a dry run sends nothing");
    }
    // Sent for real: both delivered, in order, once.
    let (code, lines) = replay(path.clone(), uri.clone(), &["--send", "--drain"]).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(results(&lines), ["delivered", "delivered"], "{lines:?}");
    let incidents = fake.incidents();
    assert_eq!(
        (incidents.len(), incidents[0]["state"].as_str()),
        (1, Some("6"))
    );
}

#[tokio::test]
async fn parked_notifications_are_retried_once_the_cause_is_fixed_and_a_dry_run_keeps_them_parked()
{
    let (servicenow, fake) = Fake::serve(Vendor::ServiceNow).await;
    let state = tempfile::tempdir().unwrap();
    let (path, uri) = (state.path().to_path_buf(), servicenow.uri());
    fake.set_down(true);
    let (code, _) = replay(
        path.clone(),
        uri.clone(),
        &["--send", "events/log-v2-fired.json"],
    )
    .await;
    assert_eq!(code, 0);
    fake.set_down(false);
    fake.fail_next(ResponseTemplate::new(403).set_body_json(json!({
        "error": {"message": "Operation Failed", "detail": "ACL Exception Insert Failed due to security constraints"},
        "status": "failure"
    })));
    let (_, lines) = replay(path.clone(), uri.clone(), &["--send", "--drain"]).await;
    assert_eq!(results(&lines), ["parked"], "{lines:?}");
    // The dry run of the redrive shows the delivery, and the park stays.
    let (code, lines) = replay(path.clone(), uri.clone(), &["--drain", "--retry-parked"]).await;
    assert_eq!(
        (code, results(&lines)),
        (0, vec!["would_deliver"]),
        "{lines:?}"
    );
    let (_, lines) = replay(path.clone(), uri.clone(), &["--send", "--drain"]).await;
    assert_eq!(
        results(&lines),
        Vec::<&str>::new(),
        "still parked, not queued: {lines:?}"
    );
    assert!(fake.incidents().is_empty());
    // The cause fixed: the redrive delivers it.
    let (code, lines) = replay(
        path.clone(),
        uri.clone(),
        &["--send", "--drain", "--retry-parked"],
    )
    .await;
    assert_eq!((code, results(&lines)), (0, vec!["delivered"]), "{lines:?}");
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn every_queued_answer_says_why_and_a_refusal_fails_the_run_with_the_fix() {
    let (servicenow, fake) = Fake::serve(Vendor::ServiceNow).await;
    let state = tempfile::tempdir().unwrap();
    let (path, uri) = (state.path().to_path_buf(), servicenow.uri());
    fake.fail_next(ResponseTemplate::new(403).set_body_json(json!({
        "error": {"message": "Operation Failed", "detail": "Data Policy Exception: Assignment group is mandatory"},
        "status": "failure"
    })));
    let (code, lines) = replay(
        path.clone(),
        uri.clone(),
        &["--send", "events/log-v2-fired.json"],
    )
    .await;
    assert_eq!(code, 1, "a refusal is configuration to fix: {lines:?}");
    let failure = &lines[0]["queue"]["failure"];
    assert_eq!(
        (lines[0]["status"].as_u64(), &failure["status"]),
        (Some(202), &json!(403))
    );
    assert_eq!(failure["refused"], true);
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("Assignment group is mandatory"),
        "{failure}"
    );
    // In words: the reason and the fix.
    fake.fail_next(ResponseTemplate::new(403).set_body_json(json!({
        "error": {"message": "Operation Failed", "detail": "Data Policy Exception: Assignment group is mandatory"},
        "status": "failure"
    })));
    let text = tokio::task::spawn_blocking(move || {
        run(
            &path,
            &["--send", "events/metric-static-fired.json"],
            &[
                ("SERVICENOW_INSTANCE_URL", &uri),
                ("SERVICENOW_USERNAME", SN_USER),
                ("SERVICENOW_PASSWORD", SN_PASSWORD),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(text.0, 1, "{text:?}");
    assert!(text.1.contains("202 queued"), "{}", text.1);
    assert!(
        text.1.contains("HTTP 403") && text.1.contains("Assignment group is mandatory"),
        "{}",
        text.1
    );
    assert!(
        text.1.contains("configuration to fix") && text.1.contains("--send --drain"),
        "{}",
        text.1
    );

    // Down: queued with the reason, not a refusal: the run succeeds.
    fake.set_down(true);
    let (code, lines) = replay(
        state.path().to_path_buf(),
        servicenow.uri(),
        &["--send", "events/prometheus-fired.json"],
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    let failure = &lines[0]["queue"]["failure"];
    assert_eq!(failure["refused"], false, "{failure}");
    assert!(
        failure["message"].as_str().unwrap().contains("503"),
        "{failure}"
    );
}
