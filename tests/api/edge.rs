//! The HTTP edge: what Azure (or anyone else) gets for each kind of request.

use base64::Engine;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn wrong_method_too_large_and_non_schema_bodies_get_clear_4xx() {
    let t = TestApp::spawn().await;
    let auth = format!("Bearer {}", t.token());

    let get = t.send("GET", Some(&auth), "").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");

    let huge = t
        .send("POST", Some(&auth), &"x".repeat(256 * 1024 + 1))
        .await;
    assert_eq!(huge.status, 413);
    assert!(huge.message().contains("256 KB"));

    let not_json = t.send("POST", Some(&auth), "alert!").await;
    assert_eq!(
        (not_json.status, not_json.outcome()),
        (400, "invalid_alert")
    );
    assert!(not_json.message().contains("not valid JSON"));

    let legacy = json!({"schemaId": "AzureMonitorMetricAlert", "data": {"status": "Activated"}});
    let reply = t.send("POST", Some(&auth), &legacy.to_string()).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.message().contains("Enable the common alert schema"),
        "{}",
        reply.message()
    );

    let mut no_id = metric_alert("x", "Fired");
    no_id["data"]["essentials"]
        .as_object_mut()
        .unwrap()
        .remove("alertId");
    let reply = t.send("POST", Some(&auth), &no_id.to_string()).await;
    assert_eq!(reply.status, 400);
    assert!(reply.message().contains("data.essentials.alertId"));

    let mut positional = metric_alert("x", "Fired");
    positional["data"]["essentials"] = json!(["x", "Fired"]);
    let reply = t.send("POST", Some(&auth), &positional.to_string()).await;
    assert_eq!((reply.status, reply.outcome()), (400, "invalid_alert"));
    assert!(
        reply.message().contains("must be objects"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn the_body_is_checked_only_after_the_token() {
    let t = TestApp::spawn().await;
    let reply = t.send("POST", None, "not even JSON").await;
    assert_eq!(
        reply.status, 401,
        "an unauthenticated caller learns nothing about the body"
    );
}

#[tokio::test]
async fn a_base64_encoded_body_is_decoded() {
    let t = TestApp::spawn().await;
    let body = metric_alert("b64", "Resolved").to_string();
    let mut event = itsm_bridge::inbound::http::event::function_url_event(
        "POST",
        Some(&format!("Bearer {}", t.token())),
        &base64::engine::general_purpose::STANDARD.encode(body),
    );
    event["isBase64Encoded"] = json!(true);
    assert_eq!(send_event(&t.app, &event).await.status, 200);
}

#[test]
fn the_lambda_refuses_to_start_without_entra_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_itsm-bridge"))
        .env_clear()
        .env("SERVICENOW_INSTANCE_URL", "https://dev1.service-now.com")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENTRA_TENANT_ID"), "{stderr}");
}
