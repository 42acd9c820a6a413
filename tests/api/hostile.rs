//! Hostile or broken input: every request gets a clear 4xx, nothing from a
//! payload reaches a query, and oversized text is cut to the ITSM's limits.

use base64::Engine;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// A Resolved for an unknown alert, as `edit` bends it.
async fn send_edited(t: &TestApp, edit: impl FnOnce(&mut Value)) -> Reply {
    let mut event = itsm_bridge::inbound::http::event::function_url_event(
        "POST",
        Some(&format!("Bearer {}", t.token())),
        &metric_alert("hostile", "Resolved").to_string(),
    );
    edit(&mut event);
    send_event(&t.app, &event).await
}

#[tokio::test]
async fn wrong_path_and_content_type_are_refused_before_anything_else() {
    let t = TestApp::spawn().await;
    let reply = send_edited(&t, |e| {
        e["rawPath"] = json!("/admin");
        e["requestContext"]["http"]["path"] = json!("/admin");
    })
    .await;
    assert_eq!((reply.status, reply.outcome()), (404, "not_found"));
    assert!(reply.message().contains("WEBHOOK_PATH"));
    let reply = send_edited(&t, |e| e["headers"]["content-type"] = json!("text/xml")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (415, "unsupported_media_type")
    );
    let reply = send_edited(&t, |e| {
        e["headers"]["content-type"] = json!("application/json; charset=utf-8")
    })
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn invalid_utf8_and_deep_nesting_are_bad_requests() {
    let t = TestApp::spawn().await;
    let mut bytes = metric_alert("utf8", "Fired").to_string().into_bytes();
    bytes.splice(20..20, [0xff, 0xfe, 0xfd]);
    let reply = send_edited(&t, |e| {
        e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
        e["isBase64Encoded"] = json!(true);
    })
    .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert!(reply.message().contains("not valid JSON"));

    // 5,000 levels of arrays: serde_json stops at 128 instead of blowing the stack.
    let text = metric_alert("deep", "Fired").to_string().replacen(
        "\"customProperties\":{\"customKey1\":\"value1\"",
        &format!("\"customProperties\":{{\"customKey1\":{}", deep_text(5000)),
        1,
    );
    assert!(
        text.contains("[[[[["),
        "the nesting went into customProperties"
    );
    let reply = t
        .send("POST", Some(&format!("Bearer {}", t.token())), &text)
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert!(
        reply.message().contains("recursion limit"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn deep_nesting_in_the_alert_context_still_opens_the_incident() {
    // alertContext is kept raw and parsed only for the description: too
    // deep to parse, the incident opens without its details rather than
    // the alert being refused (Azure would not retry a 400).
    let t = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(created("INC1"))
        .mount(&t.itsm)
        .await;
    let text = metric_alert("deep-context", "Fired").to_string().replacen(
        "\"properties\":{\"customKey1\":\"value1\"",
        &format!("\"properties\":{{\"customKey1\":{}", deep_text(5000)),
        1,
    );
    assert!(text.contains("[[[[["), "the nesting went into alertContext");
    let reply = t
        .send("POST", Some(&format!("Bearer {}", t.token())), &text)
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let sent: Value =
        serde_json::from_slice(&t.itsm.received_requests().await.unwrap()[0].body).unwrap();
    let description = sent["description"].as_str().unwrap();
    assert!(
        description.contains("Alert rule: test-metricAlertRule"),
        "{description}"
    );
    assert!(!description.contains("What:"), "{description}");
}

fn deep_text(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn huge_and_control_laden_text_is_cut_to_servicenow_limits() {
    let t = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(created("INC1"))
        .mount(&t.itsm)
        .await;
    let mut body = metric_alert("huge", "Fired");
    body["data"]["essentials"]["alertRule"] =
        json!(format!("rule\u{0}\u{1b}[31m{}", "x".repeat(100_000)));
    body["data"]["essentials"]["description"] = json!("y".repeat(100_000));
    let reply = t.post(&body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let sent: Value =
        serde_json::from_slice(&t.itsm.received_requests().await.unwrap()[0].body).unwrap();
    let short = sent["short_description"].as_str().unwrap();
    assert_eq!(short.chars().count(), 160);
    assert!(!short.chars().any(char::is_control), "{short:?}");
    assert!(sent["description"].as_str().unwrap().chars().count() <= 4000);
    assert!(
        sent["correlation_display"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 100
    );
}

#[tokio::test]
async fn nothing_from_the_payload_reaches_a_servicenow_query() {
    let t = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("INC1"))
        .mount(&t.itsm)
        .await;
    let mut body = metric_alert("x", "Fired");
    let evil = "/subscriptions/s/alerts/x^ORactive=true^NQsys_id!=";
    body["data"]["essentials"]["alertId"] = json!(evil);
    assert_eq!(t.post(&body).await.status, 503);
    assert_eq!(t.post(&body).await.outcome(), "created");
    let lookup = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.method.as_str() == "GET")
        .unwrap();
    let query: Vec<(String, String)> = lookup.url.query_pairs().into_owned().collect();
    let q = &query.iter().find(|(k, _)| k == "sysparm_query").unwrap().1;
    assert_eq!(
        q,
        &format!(
            "correlation_id={}",
            itsm_bridge::domain::correlation::correlation_key(evil)
        )
    );
    assert!(!q.contains('^'));
}
