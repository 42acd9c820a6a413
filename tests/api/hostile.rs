//! Hostile or broken input: every request gets a clear 4xx, nothing from a
//! payload reaches a query, oversized text is cut to the ITSM's limits, and
//! no record id that is not one reaches a request path.

use std::time::Duration;

use base64::Engine;
use itsm_bridge::adapters::bmc::{BmcClient, BmcConfig, BmcFields, BmcLogin};
use itsm_bridge::adapters::dryrun::DryRun;
use itsm_bridge::adapters::jira::{Deployment, JiraAuth, JiraClient, JiraConfig, JiraFields};
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::{
    Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig, ServiceNowFormat,
};
use itsm_bridge::domain::correlation::{IncidentRef, correlation_key};
use itsm_bridge::domain::incident::mapping::Resolution;
use itsm_bridge::domain::ports::{ItsmClient, ItsmError};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fakes::{Fake, Vendor};
use crate::helpers::*;
use crate::itsm_contract::draft;

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

/// Record ids no ITSM path may be built from: dot segments, a way out of
/// the segment, an encoded dot segment, nothing, too long.
fn hostile_ids() -> Vec<String> {
    ["..", "../x", "%2e%2e", "", "a/b", "x".repeat(65).as_str()]
        .map(String::from)
        .to_vec()
}

fn refused(result: Result<impl std::fmt::Debug, ItsmError>, itsm: &str, id: &str) {
    match result {
        Err(ItsmError::Rejected { status: 0, message }) => assert!(
            message.contains(itsm) && message.contains("record id"),
            "{id:?}: {message}"
        ),
        other => panic!("{id:?} must be refused before any request: {other:?}"),
    }
}

fn resolution() -> Resolution {
    Resolution {
        notes: "resolved".into(),
    }
}

#[tokio::test]
async fn a_bmc_request_id_that_is_not_an_id_never_reaches_a_path() {
    let (server, fake) = Fake::serve(Vendor::Bmc).await;
    let config = BmcConfig {
        url: server.uri().parse().unwrap(),
        fields: BmcFields::default(),
        timeout: Duration::from_secs(2),
    };
    let login = BmcLogin {
        username: BMC_USER.into(),
        password: BMC_PASSWORD.into(),
    };
    let bmc = BmcClient::new(config, CredentialSource::Fixed(login), None).unwrap();
    let incident = bmc
        .create(&draft(&correlation_key("/alerts/hostile-bmc")))
        .await
        .unwrap();
    for id in hostile_ids() {
        fake.edit(|all| all[0]["values"]["Request ID"] = json!(id));
        let before = server.received_requests().await.unwrap().len();
        refused(
            bmc.resolve(&incident, &resolution()).await,
            "BMC Helix",
            &id,
        );
        refused(bmc.reopen(&incident, "again").await, "BMC Helix", &id);
        let sent = server.received_requests().await.unwrap();
        for r in &sent[before..] {
            assert_eq!(
                (r.method.as_str(), r.url.path()),
                ("GET", "/api/arsys/v1/entry/HPD:IncidentInterface"),
                "{id:?}: only the lookup of the entry went out"
            );
        }
        assert_eq!(sent.len() - before, 2, "{id:?}: one lookup each");
    }
    assert_eq!(fake.incidents()[0]["values"]["Status"], "New");
}

#[tokio::test]
async fn servicenow_and_jira_ids_that_are_not_ids_never_reach_a_path() {
    let (sn_server, _sn) = Fake::serve(Vendor::ServiceNow).await;
    let sn = ServiceNowClient::new(
        ServiceNowConfig {
            instance_url: sn_server.uri().parse().unwrap(),
            fields: IncidentFields::default(),
            timeout: Duration::from_secs(2),
        },
        CredentialSource::Fixed(Credentials::Basic {
            username: SN_USER.into(),
            password: SN_PASSWORD.into(),
        }),
        None,
    )
    .unwrap();
    let (jira_server, _jira) = Fake::serve(Vendor::Jira).await;
    let jira = |deployment| {
        let config = JiraConfig {
            url: jira_server.uri().parse().unwrap(),
            fields: JiraFields {
                deployment,
                ..JiraFields::default()
            },
            timeout: Duration::from_secs(2),
        };
        let auth = JiraAuth::Cloud {
            email: JIRA_EMAIL.into(),
            api_token: JIRA_TOKEN.into(),
        };
        JiraClient::new(config, CredentialSource::Fixed(auth), None).unwrap()
    };
    let dry_run = DryRun::new(Box::new(ServiceNowFormat::default()), None);
    let clients: Vec<(&dyn ItsmClient, &str)> = vec![(&sn, "ServiceNow"), (&dry_run, "ServiceNow")];
    let (cloud, dc) = (jira(Deployment::Cloud), jira(Deployment::DataCenter));
    let jiras: Vec<(&dyn ItsmClient, &str)> = vec![(&cloud, "Jira"), (&dc, "Jira")];
    for id in hostile_ids() {
        // ServiceNow puts the sys_id into paths, Jira the issue key.
        let as_sys_id = IncidentRef {
            id: id.clone(),
            number: "INC0010001".into(),
        };
        let as_key = IncidentRef {
            id: "10001".into(),
            number: id.clone(),
        };
        for (itsm, name) in clients.iter().chain(&jiras) {
            let incident = if *name == "Jira" { &as_key } else { &as_sys_id };
            refused(itsm.resolve(incident, &resolution()).await, name, &id);
            refused(itsm.reopen(incident, "again").await, name, &id);
            refused(itsm.note(incident, "a note").await, name, &id);
        }
    }
    assert!(sn_server.received_requests().await.unwrap().is_empty());
    assert!(jira_server.received_requests().await.unwrap().is_empty());
}
