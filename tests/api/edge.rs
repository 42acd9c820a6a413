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

/// The Lambda binary as Lambda starts it (the runtime API is never
/// reached: these runs end at start-up), with `vars`.
fn lambda_binary(vars: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_itsm-bridge"))
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
            ("AWS_LAMBDA_FUNCTION_NAME", "itsm-bridge"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ])
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn the_lambda_refuses_to_start_without_entra_configuration() {
    let out = lambda_binary(&[("SERVICENOW_INSTANCE_URL", "https://dev1.service-now.com")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENTRA_TENANT_ID"), "{stderr}");
}

#[test]
fn a_configuration_error_is_one_sentence_naming_the_variable() {
    let out = lambda_binary(&[
        ("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
        ("ENTRA_AUDIENCES", "api://itsm-bridge"),
        ("ITSM_DRY_RUN", "true"),
        ("ITSM_TIMEOUT_MS", "0"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "itsm-bridge: configuration: ITSM_TIMEOUT_MS: 0 must be 100 to 60000: one request's time \
         limit, in milliseconds"
    );
}

#[test]
fn outside_lambda_the_binary_says_in_one_line_what_to_run_instead() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_itsm-bridge"))
        .env_clear()
        .env("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cargo run --bin replay") && stderr.contains("cargo lambda watch"),
        "{stderr}"
    );
}

#[test]
fn cargo_run_runs_replay() {
    let manifest = include_str!("../../Cargo.toml");
    let default_run = manifest
        .lines()
        .find_map(|l| l.strip_prefix("default-run = "))
        .expect("Cargo.toml names a default-run");
    assert_eq!(default_run.trim_matches('"'), "replay");
    assert!(
        manifest.contains("[[bin]]\nname = \"replay\""),
        "replay is a binary"
    );
}
