//! BMC Helix ITSM through the handler, against a fake AR REST server that
//! answers with BMC's envelopes: plain-text login tokens, 201 with a
//! Location, error arrays, `id|id` request ids.

use itsm_bridge::domain::correlation::{RecordState, correlation_key};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const NUMBER: &str = "INC000000000101";
const REQUEST_ID: &str = "INC000000000101|INC000000000101";
const CREATE: &str = "/api/arsys/v1/entry/HPD:IncidentInterface_Create";
const INCIDENTS: &str = "/api/arsys/v1/entry/HPD:IncidentInterface";

async fn login(t: &TestApp, token: &'static str, times: u64) {
    Mock::given(method("POST"))
        .and(path("/api/jwt/login"))
        .and(body_partial_form("username=bridge.bmc"))
        .and(body_partial_form("password=bmc-Pa55word-9"))
        .respond_with(ResponseTemplate::new(200).set_body_string(token))
        .up_to_n_times(times)
        .mount(&t.itsm)
        .await;
}

fn created_with_body() -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header("Location", "https://acme-restapi.onbmc.com/api/arsys/v1/entry/HPD:IncidentInterface_Create/000000000000101")
        .set_body_json(json!({"values": {"Incident Number": NUMBER}, "_links": {"self": []}}))
}

fn lookup(status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"entries": [
        {"values": {"Request ID": REQUEST_ID, "Incident Number": NUMBER, "Status": status}}]}))
}

async fn resolvable(t: &TestApp) {
    Mock::given(method("GET"))
        .and(path(INCIDENTS))
        .and(query_param(
            "q",
            format!("'Incident Number' = \"{NUMBER}\""),
        ))
        .respond_with(lookup("Assigned"))
        .mount(&t.itsm)
        .await;
}

#[tokio::test]
async fn fired_then_resolved_opens_and_resolves_one_bmc_incident() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 1).await;
    let fired = metric_alert("bmc-pair", "Fired");
    let key = correlation_key(&alert_id(&fired));
    Mock::given(method("POST"))
        .and(path(CREATE))
        .and(query_param("fields", "values(Incident Number)"))
        .and(header("authorization", "AR-JWT tok-1"))
        .and(body_partial_json(json!({"values": {
            "z1D_Action": "CREATE", "First_Name": "Azure", "Last_Name": "Monitor",
            "Impact": "4-Minor/Localized", "Urgency": "4-Low",
            "Reported Source": "Systems Management", "Service_Type": "Infrastructure Event",
            "Assigned Group": "Cloud Operations", "Vendor Ticket Number": key, "HPD_CI": "test-storageAccount"}})))
        .respond_with(created_with_body())
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&fired).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["incident"]["number"], NUMBER);
    assert_eq!(t.post(&fired).await.outcome(), "duplicate");

    resolvable(&t).await;
    Mock::given(method("PUT"))
        .and(path(format!("{INCIDENTS}/INC000000000101%7CINC000000000101")))
        .and(body_partial_json(json!({"values": {"Status": "Resolved", "Status_Reason": "Automated Resolution Reported"}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-pair", "Resolved")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (200, "resolved"),
        "{:?}",
        reply.body
    );
    let record = t.record(&alert_id(&fired)).await.unwrap();
    assert_eq!(
        (record.state, record.itsm.as_str()),
        (RecordState::Resolved, "bmc-helix")
    );
    let logins = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/jwt/login")
        .count();
    assert_eq!(
        logins, 1,
        "one token per container, not one login per event"
    );
}

#[tokio::test]
async fn a_create_without_body_is_read_back_from_its_location() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 1).await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(ResponseTemplate::new(201).insert_header(
            "Location",
            format!("{}{CREATE}/000000000000102", t.itsm.uri()),
        ))
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{CREATE}/000000000000102")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"values": {"Incident Number": "INC000000000102"}})),
        )
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-nobody", "Fired")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["incident"]["number"], "INC000000000102");
}

#[tokio::test]
async fn an_expired_token_means_one_new_login() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 1).await;
    login(&t, "tok-2", 1).await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .and(header("authorization", "AR-JWT tok-1"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"values": {"Incident Number": NUMBER}})),
        )
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(
        t.post(&metric_alert("bmc-token-1", "Fired"))
            .await
            .outcome(),
        "created"
    );

    // The token expired on BMC's side: 401, one new login, success.
    Mock::given(method("POST"))
        .and(path(CREATE))
        .and(header("authorization", "AR-JWT tok-1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!([
            {"messageType": "ERROR", "messageText": "Authentication failed", "messageNumber": 623}])))
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .and(header("authorization", "AR-JWT tok-2"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"values": {"Incident Number": "INC000000000103"}})),
        )
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-token-2", "Fired")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
    let logins = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/jwt/login")
        .count();
    assert_eq!(logins, 2);
}

#[tokio::test]
async fn error_arrays_become_clear_errors() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 10).await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!([{
            "messageType": "ERROR", "messageText": "Required field cannot be blank.",
            "messageAppendedText": "HPD:Help Desk : Company", "messageNumber": 326}])))
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-error", "Fired")).await;
    assert_eq!((reply.status, reply.outcome()), (502, "itsm_rejected"));
    assert!(
        reply
            .message()
            .contains("ERROR 326: Required field cannot be blank. (HPD:Help Desk : Company)"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn a_refused_login_names_the_credentials_and_an_outage_is_retried() {
    // Room for retries: 500 ms attempts within a 3 s deadline.
    let t = Spawn::default()
        .bmc()
        .var("ITSM_TIMEOUT_MS", "500")
        .var("ITSM_DEADLINE_MS", "3000")
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/api/jwt/login"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!([{
            "messageType": "ERROR", "messageText": "Authentication failed", "messageNumber": 623}])))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-login", "Fired")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.message().contains("BMC_USERNAME"),
        "{}",
        reply.message()
    );
    assert!(!reply.message().contains(BMC_PASSWORD));

    login(&t, "tok-1", 10).await;
    Mock::given(method("GET"))
        .and(path(INCIDENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"entries": []})))
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!([{
            "messageType": "ERROR", "messageText": "Unable to connect to the database", "messageNumber": 552}])))
        .mount(&t.itsm)
        .await;
    let before = t.itsm.received_requests().await.unwrap().len();
    let reply = t.post(&metric_alert("bmc-login", "Fired")).await;
    assert_eq!((reply.status, reply.outcome()), (503, "itsm_unavailable"));
    let requests = t.itsm.received_requests().await.unwrap();
    let count = |m: &str, p: &str| {
        requests[before..]
            .iter()
            .filter(|r| r.method.as_str() == m && r.url.path() == p)
            .count()
    };
    let (creates, lookups) = (count("POST", CREATE), count("GET", INCIDENTS));
    // Retried while a whole attempt fit, each attempt looking first (this
    // alert's claim, left by the refused attempt, is taken over), on one
    // login: the refused one was not cached.
    assert!(
        creates >= 2,
        "{creates} creates: the outage was not retried"
    );
    assert_eq!(lookups, creates, "every attempt looks before creating");
    assert_eq!(count("POST", "/api/jwt/login"), 1);
}

#[tokio::test]
async fn the_retry_after_a_lost_answer_finds_the_incident_by_its_key() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 10).await;
    let fired = metric_alert("bmc-lost", "Fired");
    let key = correlation_key(&alert_id(&fired));
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(t.post(&fired).await.status, 503);
    Mock::given(method("GET"))
        .and(path(INCIDENTS))
        .and(query_param(
            "q",
            format!("'Vendor Ticket Number' = \"{key}\""),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"entries": [
            {"values": {"Incident Number": "INC000000000999", "Vendor Ticket Number": "another"}},
            {"values": {"Incident Number": NUMBER, "Vendor Ticket Number": key}}]})))
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
    assert_eq!(reply.body["incident"]["number"], NUMBER);
}

#[tokio::test]
async fn an_incident_resolved_by_a_person_or_deleted_needs_no_put() {
    let t = Spawn::default().bmc().start().await;
    login(&t, "tok-1", 10).await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(created_with_body())
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .and(path(INCIDENTS))
        .respond_with(lookup("Closed"))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&t.itsm)
        .await;
    t.post(&metric_alert("bmc-closed", "Fired")).await;
    assert_eq!(
        t.post(&metric_alert("bmc-closed", "Resolved"))
            .await
            .outcome(),
        "closed_in_itsm"
    );

    Mock::given(method("GET"))
        .and(path(INCIDENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"entries": []})))
        .mount(&t.itsm)
        .await;
    t.post(&metric_alert("bmc-deleted", "Fired")).await;
    assert_eq!(
        t.post(&metric_alert("bmc-deleted", "Resolved"))
            .await
            .outcome(),
        "incident_gone"
    );
}

#[tokio::test]
async fn refire_reopen_and_note_use_the_entry_and_the_work_log() {
    let t = Spawn::default()
        .bmc()
        .var("REFIRE_POLICY", "reopen")
        .start()
        .await;
    login(&t, "tok-1", 10).await;
    Mock::given(method("POST"))
        .and(path(CREATE))
        .respond_with(created_with_body())
        .expect(1)
        .mount(&t.itsm)
        .await;
    resolvable(&t).await;
    Mock::given(method("PUT"))
        .and(path(format!(
            "{INCIDENTS}/INC000000000101%7CINC000000000101"
        )))
        .and(body_partial_json(json!({"values": {"Status": "Resolved"}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!(
            "{INCIDENTS}/INC000000000101%7CINC000000000101"
        )))
        .and(body_partial_json(
            json!({"values": {"Status": "In Progress"}}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/arsys/v1/entry/HPD:WorkLog"))
        .and(body_partial_json(
            json!({"values": {"Incident Number": NUMBER, "Work Log Type": "General Information"}}),
        ))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(
        t.post(&metric_alert("bmc-refire", "Fired")).await.outcome(),
        "created"
    );
    assert_eq!(
        t.post(&metric_alert("bmc-refire", "Resolved"))
            .await
            .outcome(),
        "resolved"
    );
    let mut again = metric_alert("bmc-refire", "Fired");
    again["data"]["essentials"]["firedDateTime"] = json!("2025-04-15T19:00:00Z");
    let reply = t.post(&again).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (200, "reopened"),
        "{:?}",
        reply.body
    );
}

#[tokio::test]
async fn a_location_elsewhere_never_gets_the_token() {
    for location in [
        "https://evil.example/api/arsys/v1/entry/HPD:IncidentInterface_Create/000000000000103",
        "//evil.example/api/arsys/v1/entry/HPD:IncidentInterface_Create/000000000000103",
        "\\\\evil.example\\api",
        "/api/arsys/v1/entry/HPD:IncidentInterface_Create/%2e%2e/%2e%2e/jwt/logout",
        "/api/arsys/v1/entry/HPD:IncidentInterface_Create/..%2F..%2Fjwt%2Flogout",
        "/api/jwt/logout",
    ] {
        let t = Spawn::default().bmc().start().await;
        login(&t, "tok-1", 1).await;
        Mock::given(method("POST"))
            .and(path(CREATE))
            .respond_with(ResponseTemplate::new(201).insert_header("Location", location))
            .mount(&t.itsm)
            .await;
        let reply = t.post(&metric_alert("bmc-location", "Fired")).await;
        assert_eq!(
            (reply.status, reply.outcome()),
            (502, "itsm_rejected"),
            "{location}: {:?}",
            reply.body
        );
        assert!(
            reply.message().contains("not followed"),
            "{}",
            reply.message()
        );
        // Nothing but the login and the create reached BMC.
        let requests = t.itsm.received_requests().await.unwrap();
        let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
        assert_eq!(paths, ["/api/jwt/login", CREATE], "{location}");
    }
}
