//! The real Lambda binary at TRACE, served by a fake Lambda Runtime API on
//! loopback: a Fired and a Resolved with a bearer token, a ServiceNow login
//! and AWS credentials with a session token. Everything it writes is
//! searched for every secret.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use itsm_bridge::adapters::entra::DevKey;
use itsm_bridge::adapters::store::DynamoStore;
use itsm_bridge::inbound::http::event::function_url_event;
use serde_json::Value;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

/// Hands out the queued events one per `next`, then keeps the binary waiting.
#[derive(Clone, Default)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<Value>>>,
    answers: Arc<Mutex<Vec<Value>>>,
}

impl Respond for RuntimeApi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.method.as_str() == "POST" {
            let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            self.answers.lock().unwrap().push(body);
            return ResponseTemplate::new(202);
        }
        let Some(event) = self.events.lock().unwrap().pop_front() else {
            return ResponseTemplate::new(200).set_delay(Duration::from_secs(60));
        };
        let n = self.answers.lock().unwrap().len();
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        ResponseTemplate::new(200)
            .insert_header("lambda-runtime-aws-request-id", format!("req-{n}").as_str())
            .insert_header("lambda-runtime-deadline-ms", deadline.to_string().as_str())
            .insert_header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:itsm-bridge",
            )
            .insert_header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .set_body_json(event)
    }
}

#[tokio::test]
async fn the_real_binary_at_trace_writes_no_secret() {
    for format in ["plain", "JSON"] {
        trace_run(format, Vendor::ServiceNow).await;
    }
    // Jira's API token rides in a basic auth header of its own making.
    trace_run("plain", Vendor::Jira).await;
}

async fn trace_run(format: &str, vendor: Vendor) {
    const AWS_KEY_ID: &str = "AKIAEXAMPLESECRETID7";
    const AWS_SECRET: &str = "aws-secret-access-key-3b8f0e";
    const AWS_SESSION: &str = "aws-session-token-FwoGZXIvYXdzE";
    let (servicenow, fake) = Fake::serve(vendor).await;
    let runtime = MockServer::start().await;
    let api = RuntimeApi::default();
    Mock::given(path_regex("^/2018-06-01/runtime/"))
        .and(method("GET"))
        .respond_with(api.clone())
        .mount(&runtime)
        .await;
    Mock::given(path_regex("^/2018-06-01/runtime/"))
        .and(method("POST"))
        .respond_with(api.clone())
        .mount(&runtime)
        .await;

    let state = tempfile::tempdir().unwrap();
    let jwks = state.path().join("jwks.json");
    let config = key().local_config(&jwks);
    let token = key().sign(&DevKey::claims_for(&config, now()));
    for condition in ["Fired", "Resolved"] {
        let body =
            metric_alert(&format!("binary-trace-{format}-{vendor:?}"), condition).to_string();
        let event = function_url_event("POST", Some(&format!("Bearer {token}")), &body);
        api.events.lock().unwrap().push_back(event);
    }
    let aws = crate::moto::sdk_config().await;
    let table = crate::moto::unique("trace");
    DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&aws), &table)
        .await
        .unwrap();

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_itsm-bridge"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", runtime.address().to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "itsm-bridge".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "trace".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/itsm-bridge".into(),
            ),
            ("RUST_LOG", "trace".into()),
            ("AWS_LAMBDA_LOG_FORMAT", format.into()),
            ("ENTRA_TENANT_ID", config.tenant_id.clone()),
            ("ENTRA_AUDIENCES", config.audiences.join(",")),
            ("ENTRA_REQUIRED_ROLE", "ActionGroupsSecureWebhook".into()),
            ("ENTRA_JWKS_URL", format!("file://{}", jwks.display())),
            ("SERVICENOW_INSTANCE_URL", servicenow.uri()),
            ("SERVICENOW_USERNAME", SN_USER.into()),
            ("SERVICENOW_PASSWORD", SN_PASSWORD.into()),
            ("CORRELATION_TABLE", table.clone()),
            ("AWS_ENDPOINT_URL", crate::moto::url()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", AWS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.into()),
            ("AWS_SESSION_TOKEN", AWS_SESSION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("METRICS_NAMESPACE", "off".into()),
            (
                "ITSM_KIND",
                if vendor == Vendor::Jira {
                    "jira"
                } else {
                    "servicenow"
                }
                .into(),
            ),
            ("JIRA_URL", servicenow.uri()),
            ("JIRA_PROJECT", "OPS".into()),
            ("JIRA_EMAIL", JIRA_EMAIL.into()),
            ("JIRA_API_TOKEN", JIRA_TOKEN.into()),
        ])
        // A file, not a pipe: TRACE writes more than a pipe holds.
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while api.answers.lock().unwrap().len() < 2 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    child.wait().unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(log.path()).unwrap()).into_owned();
    let answers = api.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 2, "two answers; the binary wrote:\n{text}");
    assert_eq!(answers[0]["statusCode"], 201, "{answers:?}");
    assert_eq!(answers[1]["statusCode"], 200, "{answers:?}");
    let incident = &fake.incidents()[0];
    let resolved = incident["state"] == "6" || incident["fields"]["status"]["name"] == "Resolved";
    assert!(resolved, "{incident}");
    assert!(
        text.contains("TRACE"),
        "{format}: the binary logged at TRACE"
    );
    let signature = token.rsplit('.').next().unwrap();
    let jira_basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{JIRA_EMAIL}:{JIRA_TOKEN}"))
    };
    for (what, secret) in [
        ("the bearer token's signature", signature),
        ("the bearer token", token.as_str()),
        ("the ServiceNow password", SN_PASSWORD),
        ("the AWS secret key", AWS_SECRET),
        ("the AWS session token", AWS_SESSION),
        ("the Jira API token", JIRA_TOKEN),
        ("the Jira basic credentials", &jira_basic),
    ] {
        assert!(!text.contains(secret), "{format}: {what} is in the output");
    }
}

/// The sync role (`_HANDLER=sync`) at TRACE: a scheduled event, a change
/// read from ServiceNow, an Entra token got with the client secret and an
/// alert closed with it. Neither the secret nor the token is written.
#[tokio::test]
async fn the_sync_role_at_trace_writes_no_secret() {
    use crate::fake_azure::{ARM_TOKEN, AZ_SECRET, FakeAzure};
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().display().to_string();
    let (azure_server, azure) = FakeAzure::serve().await;
    // The webhook opens the incident in the same state folder, then lets go of it.
    let t = Spawn::default().var("STATE_DIR", &dir).start().await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    let body = metric_alert("binary-sync", "Fired");
    assert_eq!(t.post(&body).await.outcome(), "created");
    let number = fake.incidents()[0]["number"].as_str().unwrap().to_string();
    fake.person(&number, "6", "jane.doe", now() - 5);
    let servicenow = t.itsm.uri();
    let entra = t.entra.uri();
    let itsm_server = t.itsm;
    drop((t.app, t.store));

    let runtime = MockServer::start().await;
    let api = RuntimeApi::default();
    Mock::given(path_regex("^/2018-06-01/runtime/"))
        .respond_with(api.clone())
        .mount(&runtime)
        .await;
    // The scheduled event the template's rule sends, as in events/.
    let schedule = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/sync-schedule.json"
    ))
    .unwrap();
    api.events
        .lock()
        .unwrap()
        .push_back(serde_json::from_str(&schedule).unwrap());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut vars: Vec<(&str, String)> = FakeAzure::vars(&azure_server);
    vars.extend([
        ("AWS_LAMBDA_RUNTIME_API", runtime.address().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "itsm-bridge-sync".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("_HANDLER", "sync".into()),
        ("RUST_LOG", "trace".into()),
        ("ENTRA_TENANT_ID", TENANT.into()),
        ("ENTRA_AUDIENCES", AUDIENCE.into()),
        ("ENTRA_AUTHORITY", entra),
        ("SERVICENOW_INSTANCE_URL", servicenow),
        ("SERVICENOW_USERNAME", SN_USER.into()),
        ("SERVICENOW_PASSWORD", SN_PASSWORD.into()),
        ("STATE_DIR", dir.clone()),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_itsm-bridge"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while api.answers.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    child.wait().unwrap();
    drop(itsm_server);
    let text = String::from_utf8_lossy(&std::fs::read(log.path()).unwrap()).into_owned();
    let answers = api.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1, "one answer; the binary wrote:\n{text}");
    assert_eq!(answers[0]["sent"], 1, "{answers:?}\n{text}");
    assert_eq!(azure.changes().len(), 1);
    // Nothing on this path writes at TRACE itself; the HTTP clients' DEBUG
    // lines show the verbose levels are on.
    assert!(
        text.contains("DEBUG"),
        "the binary logged verbosely:\n{text}"
    );
    for (what, secret) in [
        ("the Azure client secret", AZ_SECRET),
        ("the Resource Manager token", ARM_TOKEN),
        ("the ServiceNow password", SN_PASSWORD),
    ] {
        assert!(!text.contains(secret), "{what} is in the output");
    }
}
