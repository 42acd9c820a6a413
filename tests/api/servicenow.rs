//! Fired → incident → Resolved against a fake ServiceNow that answers with
//! the Table API's real envelopes, statuses and quirks.

use std::time::Duration;

use itsm_bridge::domain::correlation::{RecordState, correlation_key};
use serde_json::{Value, json};
use wiremock::matchers::{
    basic_auth, body_partial_json, header, method, path, path_regex, query_param,
};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// ServiceNow's answer to an accepted update.
fn updated() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"result": {}}))
}

fn failure(status: u16, message: &str, detail: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"message": message, "detail": detail}, "status": "failure"}),
    )
}

fn create_mock() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/api/now/table/incident"))
}

fn resolve_mock() -> wiremock::MockBuilder {
    Mock::given(method("PATCH")).and(path(format!("/api/now/table/incident/{SYS_ID}")))
}

fn lookup_mock() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/api/now/table/incident"))
}

#[tokio::test]
async fn fired_creates_one_incident_with_the_mapped_fields() {
    let t = TestApp::spawn().await;
    let fired = metric_alert("fired-1", "Fired");
    let key = correlation_key(&alert_id(&fired));
    create_mock()
        .and(basic_auth(SN_USER, SN_PASSWORD))
        .and(query_param("sysparm_fields", "sys_id,number"))
        .and(query_param("sysparm_input_display_value", "true"))
        .and(body_partial_json(json!({
            "correlation_id": key,
            "impact": "3", "urgency": "3",
            "cmdb_ci": "test-storageAccount",
            "assignment_group": "Cloud Operations",
            "caller_id": "azure.monitor",
            "category": "Infrastructure",
        })))
        .respond_with(created("INC0010001"))
        .expect(1)
        .mount(&t.itsm)
        .await;

    let first = t.post(&fired).await;
    assert_eq!(
        (first.status, first.outcome()),
        (201, "created"),
        "{:?}",
        first.body
    );
    assert_eq!(
        first.body["incident"],
        json!({"id": SYS_ID, "number": "INC0010001"})
    );

    let sent = &t.itsm.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    let short = body["short_description"].as_str().unwrap();
    assert!(
        short.starts_with("[Sev4] test-metricAlertRule: Transactions"),
        "{short}"
    );
    assert!(short.chars().count() <= 160);
    assert!(
        body["correlation_display"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 100
    );
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains(&alert_id(&fired))
    );

    // Azure delivers again: no second incident, no ITSM call at all.
    let again = t.post(&fired).await;
    assert_eq!((again.status, again.outcome()), (200, "duplicate"));
    assert_eq!(again.body["incident"]["number"], "INC0010001");
    assert_eq!(t.itsm.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn resolved_resolves_the_incident_once() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(created("INC0010002"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .and(body_partial_json(
            json!({"state": "6", "close_code": "Solution provided"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": {"sys_id": SYS_ID, "number": "INC0010002", "state": "6"}}),
        ))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("pair-1", "Fired");
    assert_eq!(t.post(&fired).await.status, 201);

    let resolved = t.post(&metric_alert("pair-1", "Resolved")).await;
    assert_eq!(
        (resolved.status, resolved.outcome()),
        (200, "resolved"),
        "{:?}",
        resolved.body
    );
    let patch = t.itsm.received_requests().await.unwrap().pop().unwrap();
    let notes: Value = serde_json::from_slice(&patch.body).unwrap();
    assert!(notes["close_notes"].as_str().unwrap().contains("Resolved"));

    let again = t.post(&metric_alert("pair-1", "Resolved")).await;
    assert_eq!((again.status, again.outcome()), (200, "already_resolved"));
    let late_fired = t.post(&fired).await;
    assert_eq!(
        (late_fired.status, late_fired.outcome()),
        (200, "stale_fired")
    );

    let record = t.record(&alert_id(&fired)).await.unwrap();
    assert_eq!(record.state, RecordState::Resolved);
    assert_eq!(record.incident.unwrap().number, "INC0010002");
    assert_eq!(record.itsm, "servicenow");
    assert!(record.fired_at.is_some() && record.resolved_at.is_some());
    assert!(record.expires_at > now() + 89 * 86400);
}

#[tokio::test]
async fn resolved_before_fired_is_remembered_and_opens_nothing() {
    let t = TestApp::spawn().await;
    let resolved = t.post(&metric_alert("early", "Resolved")).await;
    assert_eq!(
        (resolved.status, resolved.outcome()),
        (200, "resolved_without_incident")
    );
    let fired = t.post(&metric_alert("early", "Fired")).await;
    assert_eq!((fired.status, fired.outcome()), (200, "stale_fired"));
    assert!(t.itsm.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn error_envelope_becomes_a_clear_error_and_the_retry_looks_before_creating() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(failure(
            400,
            "Invalid value for field",
            "impact: not a choice",
        ))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("rejected", "Fired");
    let reply = t.post(&fired).await;
    assert_eq!(
        reply.status, 502,
        "a rejected request is not retried by Azure"
    );
    assert_eq!(reply.outcome(), "itsm_rejected");
    assert!(
        reply
            .message()
            .contains("Invalid value for field: impact: not a choice"),
        "{}",
        reply.message()
    );

    // The operator fixes it and replays: the claim was released, and the
    // retry asks ServiceNow before creating, since a create may have landed.
    lookup_mock()
        .and(query_param(
            "sysparm_query",
            format!("correlation_id={}", correlation_key(&alert_id(&fired))),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .expect(1)
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(created("INC0010003"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let retry = t.post(&fired).await;
    assert_eq!((retry.status, retry.outcome()), (201, "created"));
}

#[tokio::test]
async fn bad_credentials_name_the_variables_to_fix() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(failure(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
        ))
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("unauth", "Fired")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.message().contains("SERVICENOW_USERNAME"),
        "{}",
        reply.message()
    );
    assert!(!reply.message().contains(SN_PASSWORD));
}

#[tokio::test]
async fn data_policy_on_resolve_says_what_to_configure_and_keeps_the_incident_open() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(created("INC0010004"))
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .respond_with(failure(
            403,
            "Operation Failed",
            "Data Policy Exception: The following fields are mandatory: Resolution code",
        ))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("policy", "Fired");
    t.post(&fired).await;
    let reply = t.post(&metric_alert("policy", "Resolved")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.message().contains("Resolution code"),
        "{}",
        reply.message()
    );
    assert!(
        reply.message().contains("SERVICENOW_CLOSE_CODE"),
        "{}",
        reply.message()
    );
    assert_eq!(
        t.record(&alert_id(&fired)).await.unwrap().state,
        RecordState::Open
    );

    // Not lost: once the instance accepts it, the next delivery resolves.
    resolve_mock().respond_with(updated()).mount(&t.itsm).await;
    let retry = t.post(&metric_alert("policy", "Resolved")).await;
    assert_eq!((retry.status, retry.outcome()), (200, "resolved"));
}

#[tokio::test]
async fn rate_limits_and_outages_answer_503_so_azure_retries() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(failure(429, "Too many requests", "").insert_header("Retry-After", "7"))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(failure(503, "Service Unavailable", "node restarting"))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("busy", "Fired");
    let limited = t.post(&fired).await;
    assert_eq!(limited.status, 503);
    assert_eq!(limited.headers["retry-after"], "5");
    assert!(
        limited.message().contains("Retry-After 7"),
        "{}",
        limited.message()
    );
    let down = t.post(&fired).await;
    assert_eq!((down.status, down.outcome()), (503, "itsm_unavailable"));

    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(created("INC0010005"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(t.post(&fired).await.outcome(), "created");
}

#[tokio::test]
async fn a_hibernating_instance_is_not_a_success() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "text/html;charset=UTF-8")
                .set_body_string("<html><head><title>Instance Hibernating page</title></head><body>Your instance is hibernating</body></html>"),
        )
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("sleepy", "Fired")).await;
    assert_eq!(reply.status, 503);
    assert!(reply.message().contains("HTML page"), "{}", reply.message());
}

#[tokio::test]
async fn an_incident_created_by_a_timed_out_attempt_is_found_not_duplicated() {
    let t = TestApp::spawn().await;
    let fired = metric_alert("slow", "Fired");
    let key = correlation_key(&alert_id(&fired));
    // ServiceNow creates the incident but answers after our timeout.
    create_mock()
        .respond_with(created("INC0010006").set_delay(Duration::from_millis(2500)))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let first = t.post(&fired).await;
    assert_eq!((first.status, first.outcome()), (503, "itsm_unavailable"));

    // A quirk of encoded queries: an ignored field matches every record, so
    // each returned record's key is checked.
    lookup_mock()
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": "0000000000000000000000000000dead", "number": "INC0000001", "correlation_id": "someone-else"},
            {"sys_id": SYS_ID, "number": "INC0010006", "correlation_id": key},
        ]})))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let retry = t.post(&fired).await;
    assert_eq!(
        (retry.status, retry.outcome()),
        (201, "recovered"),
        "{:?}",
        retry.body
    );
    assert_eq!(retry.body["incident"]["number"], "INC0010006");
}

#[tokio::test]
async fn a_lookup_that_returns_other_records_does_not_count_as_found() {
    let t = TestApp::spawn().await;
    let fired = metric_alert("lookalike", "Fired");
    create_mock()
        .respond_with(failure(500, "Internal error", ""))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(t.post(&fired).await.status, 503);
    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": "0000000000000000000000000000beef", "number": "INC0000002", "correlation_id": ""},
        ]})))
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(created("INC0010007"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let retry = t.post(&fired).await;
    assert_eq!((retry.status, retry.outcome()), (201, "created"));
    assert_eq!(retry.body["incident"]["number"], "INC0010007");
}

#[tokio::test]
async fn a_deleted_incident_is_recorded_not_retried() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(created("INC0010010"))
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .respond_with(failure(
            404,
            "No Record found",
            "Record doesn't exist or ACL restricts the record retrieval",
        ))
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("deleted", "Fired");
    t.post(&fired).await;
    let reply = t.post(&metric_alert("deleted", "Resolved")).await;
    assert_eq!((reply.status, reply.outcome()), (200, "incident_gone"));
    assert_eq!(
        t.record(&alert_id(&fired)).await.unwrap().state,
        RecordState::IncidentGone
    );
}

#[tokio::test]
async fn oauth_token_is_fetched_once_and_renewed_after_a_401() {
    let t = Spawn::default()
        .var("SERVICENOW_CLIENT_ID", "client-1")
        .var("SERVICENOW_CLIENT_SECRET", "client-secret-1")
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(body_partial_form("grant_type=password"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-1", "refresh_token": "r", "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 1799}),
        ))
        .mount(&t.itsm)
        .await;
    create_mock()
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(created("INC0010011"))
        .mount(&t.itsm)
        .await;
    assert_eq!(
        t.post(&metric_alert("oauth-1", "Fired")).await.outcome(),
        "created"
    );
    assert_eq!(
        t.post(&metric_alert("oauth-2", "Fired")).await.outcome(),
        "created"
    );

    // The token is revoked: one new login, then success.
    Mock::given(method("PATCH"))
        .and(path_regex("/api/now/table/incident/.*"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(failure(401, "User Not Authenticated", ""))
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(updated())
        .mount(&t.itsm)
        .await;
    assert_eq!(
        t.post(&metric_alert("oauth-1", "Resolved")).await.outcome(),
        "resolved"
    );
    let logins = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/oauth_token.do")
        .count();
    assert_eq!(logins, 2);
}

/// A TCP relay in front of the fake ServiceNow that counts connections.
async fn counting_relay(
    target: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn one_request_per_operation_over_one_kept_connection() {
    let upstream = wiremock::MockServer::start().await;
    let (relay, connections) = counting_relay(*upstream.address()).await;
    let t = Spawn::default()
        .var("SERVICENOW_INSTANCE_URL", &relay)
        .start()
        .await;
    create_mock()
        .respond_with(created("INC0010012"))
        .expect(2)
        .mount(&upstream)
        .await;
    resolve_mock()
        .respond_with(updated())
        .expect(1)
        .mount(&upstream)
        .await;
    assert_eq!(
        t.post(&metric_alert("reuse-1", "Fired")).await.outcome(),
        "created"
    );
    assert_eq!(
        t.post(&metric_alert("reuse-1", "Fired")).await.outcome(),
        "duplicate"
    );
    assert_eq!(
        t.post(&metric_alert("reuse-1", "Resolved")).await.outcome(),
        "resolved"
    );
    assert_eq!(
        t.post(&metric_alert("reuse-2", "Fired")).await.outcome(),
        "created"
    );
    // Exactly one ServiceNow request per create and per resolve, none for a duplicate ...
    assert_eq!(upstream.received_requests().await.unwrap().len(), 3);
    // ... all over one connection (one TLS handshake per host per container).
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_within_the_deadline() {
    let t = Spawn::default()
        .var("ITSM_DEADLINE_MS", "6000")
        .start()
        .await;
    create_mock()
        .respond_with(failure(503, "Service Unavailable", ""))
        .up_to_n_times(2)
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(failure(429, "Too many requests", "").insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .expect(3)
        .mount(&t.itsm)
        .await;
    create_mock()
        .respond_with(created("INC0010013"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let started = std::time::Instant::now();
    let reply = t.post(&metric_alert("retried", "Fired")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
    // Retry-After was honoured. (How long retries take is measured in
    // BENCHMARKS.md, not asserted: a slow machine must not fail this.)
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn a_slow_create_is_found_by_the_retry_not_duplicated() {
    let t = Spawn::default()
        .var("ITSM_TIMEOUT_MS", "500")
        .var("ITSM_DEADLINE_MS", "3000")
        .start()
        .await;
    let fired = metric_alert("slow-retry", "Fired");
    let key = correlation_key(&alert_id(&fired));
    // ServiceNow commits the incident but answers after our timeout.
    create_mock()
        .respond_with(created("INC0010014").set_delay(Duration::from_millis(800)))
        .expect(1)
        .mount(&t.itsm)
        .await;
    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": SYS_ID, "number": "INC0010014", "correlation_id": key}]})))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&fired).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "recovered"),
        "{:?}",
        reply.body
    );
}

#[tokio::test]
async fn an_outage_longer_than_the_deadline_is_a_503_with_nothing_lost() {
    // Room for retries: each (find, then create) needs 2 × 500 ms.
    let t = Spawn::default()
        .var("ITSM_TIMEOUT_MS", "500")
        .var("ITSM_DEADLINE_MS", "2500")
        .start()
        .await;
    create_mock()
        .respond_with(failure(503, "down", ""))
        .mount(&t.itsm)
        .await;
    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("outage", "Fired");
    let started = std::time::Instant::now();
    let reply = t.post(&fired).await;
    assert_eq!((reply.status, reply.outcome()), (503, "itsm_unavailable"));
    // It gave up rather than retrying on; the bound is loose on purpose
    // (a 2.5 s deadline, a slow CI machine): a hang fails, a slow run does not.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let attempts = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert!(
        attempts >= 2,
        "retried before giving up ({attempts} attempts)"
    );
    // The claim was released: Azure's retry, once ServiceNow is back, creates at once.
    let record = t.record(&alert_id(&fired)).await.unwrap();
    assert_eq!(
        (record.state, record.lease_until),
        (RecordState::Claimed, 0)
    );
}

#[tokio::test]
async fn an_incident_a_person_closed_first_is_left_alone() {
    let t = TestApp::spawn().await;
    create_mock()
        .respond_with(created("INC0010015"))
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .respond_with(failure(
            403,
            "Operation Failed",
            "ACL Exception Update Failed due to security constraints",
        ))
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/incident/{SYS_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": {"sys_id": SYS_ID, "number": "INC0010015", "state": "7"}}),
        ))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("closed-by-person", "Fired");
    t.post(&fired).await;
    let reply = t.post(&metric_alert("closed-by-person", "Resolved")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (200, "closed_in_itsm"),
        "{:?}",
        reply.body
    );
    assert_eq!(
        t.record(&alert_id(&fired)).await.unwrap().state,
        RecordState::Resolved
    );
}

fn fired_at(id: &str, when: &str) -> Value {
    let mut body = metric_alert(id, "Fired");
    body["data"]["essentials"]["firedDateTime"] = json!(when);
    body
}

/// Opens and resolves an incident for `id`; returns the number of requests so far.
async fn opened_and_resolved(t: &TestApp, id: &str) -> usize {
    assert_eq!(
        t.post(&metric_alert(id, "Fired")).await.outcome(),
        "created"
    );
    assert_eq!(
        t.post(&metric_alert(id, "Resolved")).await.outcome(),
        "resolved"
    );
    t.itsm.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_reopen_sets_in_progress_with_a_work_note() {
    // The policy itself is tested in the domain; this is the wire format.
    let t = Spawn::default()
        .var("REFIRE_POLICY", "reopen")
        .start()
        .await;
    create_mock()
        .respond_with(created("INC0010021"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .and(body_partial_json(json!({"state": "6"})))
        .respond_with(updated())
        .expect(1)
        .mount(&t.itsm)
        .await;
    resolve_mock()
        .and(body_partial_json(json!({"state": "2"})))
        .respond_with(updated())
        .expect(1)
        .mount(&t.itsm)
        .await;
    opened_and_resolved(&t, "refire-reopen").await;
    let reply = t
        .post(&fired_at("refire-reopen", "2025-04-15T19:00:00Z"))
        .await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (200, "reopened"),
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["incident"]["number"], "INC0010021");
    let requests = t.itsm.received_requests().await.unwrap();
    let patch = requests.last().unwrap();
    assert_eq!(
        (patch.method.as_str(), patch.url.path()),
        (
            "PATCH",
            format!("/api/now/table/incident/{SYS_ID}").as_str()
        )
    );
    let patch: Value = serde_json::from_slice(&patch.body).unwrap();
    assert!(
        patch["work_notes"]
            .as_str()
            .unwrap()
            .contains("firing again at 2025-04-15T19:00:00Z")
    );
}

#[tokio::test]
async fn a_note_sends_only_work_notes() {
    let t = Spawn::default().var("REFIRE_POLICY", "note").start().await;
    create_mock()
        .respond_with(created("INC0010023"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    resolve_mock().respond_with(updated()).mount(&t.itsm).await;
    let before = opened_and_resolved(&t, "refire-note").await;
    let again = fired_at("refire-note", "2025-04-15T19:00:00Z");
    assert_eq!(t.post(&again).await.outcome(), "noted");
    assert_eq!(
        t.post(&again).await.outcome(),
        "stale_fired",
        "the same firing notes once"
    );
    let requests = t.itsm.received_requests().await.unwrap();
    assert_eq!(requests.len(), before + 1);
    let note: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    assert_eq!(
        note.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["work_notes"]
    );
    assert_eq!(
        t.record(&alert_id(&again)).await.unwrap().state,
        RecordState::Resolved
    );
}

#[tokio::test]
async fn routing_rules_set_assignment_fields_and_texts() {
    let rules = json!({
        "rules": [{"name": "storage", "match": {"resource_type": "microsoft.storage/*", "severity": ["Sev3", "Sev4"]},
                   "set": {"assignment_group": "Storage team", "urgency": 2, "fields": {"u_environment": "prod"}}}],
        "default": {"assignment_group": "Cloud Operations"},
        "templates": {"short_description": "{severity} {rule} on {target} ({resource_group})"}
    });
    let t = Spawn::default()
        .var("ROUTING_RULES", &rules.to_string())
        .start()
        .await;
    create_mock()
        .and(body_partial_json(json!({
            "assignment_group": "Storage team", "urgency": "2", "impact": "3", "u_environment": "prod",
            "short_description": "Sev4 test-metricAlertRule on test-storageAccount (test-RG)",
            "caller_id": "azure.monitor"})))
        .respond_with(created("INC0010030"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("routed", "Fired")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
}

#[tokio::test]
async fn an_id_in_an_answer_cannot_steer_a_request() {
    use itsm_bridge::adapters::secrets::CredentialSource;
    use itsm_bridge::adapters::servicenow::{
        Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig,
    };
    use itsm_bridge::domain::correlation::IncidentRef;
    use itsm_bridge::domain::incident::mapping::Resolution;
    use itsm_bridge::domain::ports::{ItsmClient, ItsmError};
    let t = TestApp::spawn().await;
    let client = ServiceNowClient::new(
        ServiceNowConfig {
            instance_url: t.itsm.uri().parse().unwrap(),
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
    let key = correlation_key("/alerts/steered");
    let steer = "../../../api/now/table/sys_user/6816f79cc0a8016401c5a33be04be441";
    // A lookup answer whose record carries the key but a path for a sys_id.
    lookup_mock()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": steer, "number": "INC0010099", "correlation_id": key}]})))
        .mount(&t.itsm)
        .await;
    assert_eq!(
        client.find(&key).await,
        Ok(None),
        "not an incident we can address"
    );
    // An id from anywhere (a record, say) is checked before it is sent.
    let forged = IncidentRef {
        id: steer.into(),
        number: "INC0010099".into(),
    };
    let resolution = Resolution { notes: "n".into() };
    assert!(matches!(
        client.resolve(&forged, &resolution).await,
        Err(ItsmError::Rejected { status: 0, .. })
    ));
    assert!(client.note(&forged, "n").await.is_err());
    let requests = t.itsm.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "only the lookup was sent");
}
