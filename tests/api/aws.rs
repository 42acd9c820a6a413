//! DynamoDB and Secrets Manager, against moto's server on loopback.

use std::collections::HashSet;
use std::time::Duration;

use itsm_bridge::domain::correlation::{RecordState, correlation_key};
use serde_json::{Value, json};
use wiremock::matchers::{basic_auth, method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"result": {"sys_id": SYS_ID, "state": "6"}}))
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_alert_open_one_incident() {
    let t = Spawn::default().dynamodb().start().await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(created("INC0020001").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let fired = metric_alert("fifty", "Fired");
    let replies = futures::future::join_all((0..50).map(|_| t.post(&fired))).await;
    assert_eq!(
        replies.iter().filter(|r| r.outcome() == "created").count(),
        1
    );
    for r in &replies {
        assert!(
            matches!(r.outcome(), "created" | "duplicate" | "in_progress"),
            "{:?}",
            r.body
        );
    }
    assert_eq!(t.post(&fired).await.outcome(), "duplicate");
    let record = t.record(&alert_id(&fired)).await.unwrap();
    assert_eq!(
        (record.state, record.incident.unwrap().number.as_str()),
        (RecordState::Open, "INC0020001")
    );
}

#[tokio::test]
async fn interleaved_fired_and_resolved_end_consistent() {
    interleaved(Spawn::default().dynamodb().start().await).await;
}

#[tokio::test]
async fn interleaved_fired_and_resolved_end_consistent_on_the_embedded_store() {
    interleaved(TestApp::spawn().await).await;
}

/// Sends `events` all at once and, as Azure does, retries whatever got a 503.
async fn deliver_all(t: &TestApp, events: Vec<Value>) {
    let mut pending = events;
    for _ in 0..20 {
        let replies = futures::future::join_all(pending.iter().map(|e| t.post(e))).await;
        for r in &replies {
            assert!(r.status < 400 || r.status == 503, "{:?}", r.body);
        }
        pending = pending
            .into_iter()
            .zip(replies)
            .filter(|(_, r)| r.status == 503)
            .map(|(e, _)| e)
            .collect();
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} deliveries never succeeded", pending.len());
}

/// Ten alerts: five fire first and are then resolved while the other five
/// fire and resolve at once, in either order, all concurrently.
async fn interleaved(t: TestApp) {
    Mock::given(method("POST"))
        .respond_with(created("INC0020001").set_delay(Duration::from_millis(100)))
        .mount(&t.itsm)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ok())
        .mount(&t.itsm)
        .await;
    let ids: Vec<String> = (0..10).map(|i| format!("interleaved-{i}")).collect();
    let (first, racing) = ids.split_at(5);
    deliver_all(
        &t,
        first.iter().map(|id| metric_alert(id, "Fired")).collect(),
    )
    .await;
    let mut events: Vec<Value> = first
        .iter()
        .map(|id| metric_alert(id, "Resolved"))
        .collect();
    for (i, id) in racing.iter().enumerate() {
        let (a, b) = if i % 2 == 0 {
            ("Fired", "Resolved")
        } else {
            ("Resolved", "Fired")
        };
        events.push(metric_alert(id, a));
        events.push(metric_alert(id, b));
    }
    deliver_all(&t, events).await;

    let requests = t.itsm.received_requests().await.unwrap();
    let created: Vec<String> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["correlation_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: HashSet<&String> = created.iter().collect();
    assert_eq!(unique.len(), created.len(), "no alert got two incidents");
    // Liveness: every alert that fired before it resolved has its incident.
    for id in first {
        let key = correlation_key(&alert_id(&metric_alert(id, "Fired")));
        assert!(
            created.contains(&key),
            "{id} fired first but got no incident"
        );
    }
    assert!((5..=10).contains(&created.len()), "{}", created.len());
    let resolves = requests
        .iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .count();
    assert_eq!(
        resolves,
        created.len(),
        "every incident opened was resolved, once"
    );
    for id in &ids {
        let body = metric_alert(id, "Fired");
        let record = t.record(&alert_id(&body)).await.unwrap();
        let opened = created.contains(&correlation_key(&alert_id(&body)));
        let expected = if opened {
            RecordState::Resolved
        } else {
            RecordState::ResolvedWithoutIncident
        };
        assert_eq!(record.state, expected, "{id}");
        assert_eq!(record.incident.is_some(), opened, "{id}");
    }
}

#[tokio::test]
async fn an_expired_lease_is_recovered_through_the_correlation_lookup() {
    let t = Spawn::default()
        .dynamodb()
        .var("CLAIM_LEASE_SECS", "30")
        .start()
        .await;
    let fired = metric_alert("lease", "Fired");
    let key = correlation_key(&alert_id(&fired));
    // The first attempt creates the incident but dies before recording it.
    Mock::given(method("POST"))
        .respond_with(created("INC0020001").set_delay(Duration::from_millis(2500)))
        .expect(1)
        .mount(&t.itsm)
        .await;
    assert_eq!(t.post(&fired).await.status, 503);
    let mut claim = t.record(&alert_id(&fired)).await.unwrap();
    let version = claim.version;
    claim.lease_until = now() + 30; // as if it had never released its claim
    claim.version += 1;
    t.store.put(&claim, Some(version), now()).await.unwrap();
    assert_eq!(t.post(&fired).await.outcome(), "in_progress");

    t.advance(31);
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": SYS_ID, "number": "INC0020001", "correlation_id": key}]})))
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&fired).await;
    assert_eq!((reply.status, reply.outcome()), (201, "recovered"));
    assert_eq!(
        t.record(&alert_id(&fired)).await.unwrap().state,
        RecordState::Open
    );
}

#[tokio::test]
async fn records_carry_the_ttl_attribute() {
    let t = Spawn::default()
        .dynamodb()
        .var("RECORD_TTL_DAYS", "7")
        .start()
        .await;
    let body = metric_alert("ttl", "Resolved");
    assert_eq!(t.post(&body).await.outcome(), "resolved_without_incident");
    let client = aws_sdk_dynamodb::Client::new(t.aws.as_ref().unwrap());
    let table = t.config.store.clone();
    let itsm_bridge::config::StoreConfig::DynamoDb { table } = table else {
        panic!()
    };
    let item = client
        .get_item()
        .table_name(&table)
        .key(
            "alert_id",
            aws_sdk_dynamodb::types::AttributeValue::S(alert_id(&body)),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!((expires - (now() + 7 * 86400)).abs() < 60, "{expires}");
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let spec = ttl.time_to_live_description.unwrap();
    assert_eq!(spec.attribute_name.as_deref(), Some("expires_at"));
}

#[tokio::test]
async fn the_secret_is_cached_and_reread_after_a_401() {
    let t = Spawn::default()
        .secret(json!({"username": "rotating.user", "password": "first-password"}))
        .start()
        .await;
    let secret_id = t.config.itsm.secret().unwrap().0.to_string();
    Mock::given(method("POST"))
        .and(basic_auth("rotating.user", "first-password"))
        .respond_with(created("INC0020001"))
        .up_to_n_times(2)
        .mount(&t.itsm)
        .await;
    assert_eq!(
        t.post(&metric_alert("secret-1", "Fired")).await.outcome(),
        "created"
    );

    // The secret rotates in Secrets Manager; the old password still works
    // for a while, and the cached value keeps being used.
    let sm = aws_sdk_secretsmanager::Client::new(t.aws.as_ref().unwrap());
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(
            json!({"username": "rotating.user", "password": "second-password"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.post(&metric_alert("secret-2", "Fired")).await.outcome(),
        "created",
        "cached secret in use"
    );

    // Then ServiceNow drops the old password: one 401, one fresh read, success.
    Mock::given(method("PATCH"))
        .and(basic_auth("rotating.user", "first-password"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "User Not Authenticated", "detail": ""}, "status": "failure"})))
        .mount(&t.itsm)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex("/api/now/table/incident/.+"))
        .and(basic_auth("rotating.user", "second-password"))
        .respond_with(ok())
        .expect(1)
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("secret-1", "Resolved")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (200, "resolved"),
        "{:?}",
        reply.body
    );
}

#[tokio::test]
async fn bmc_credentials_come_from_the_secret() {
    let t = Spawn::default()
        .bmc()
        .secret(json!({"username": "secret.bmc.user", "password": "from-secrets-manager"}))
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/api/jwt/login"))
        .and(crate::helpers::body_partial_form(
            "username=secret.bmc.user",
        ))
        .and(crate::helpers::body_partial_form(
            "password=from-secrets-manager",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("tok-s"))
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/arsys/v1/entry/HPD:IncidentInterface_Create"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"values": {"Incident Number": "INC000000000777"}})),
        )
        .mount(&t.itsm)
        .await;
    let reply = t.post(&metric_alert("bmc-secret", "Fired")).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "created"),
        "{:?}",
        reply.body
    );
}

/// An input the store cannot take gets a 400 that says why, never a 503
/// Azure would retry for nothing; both stores draw the line in one place.
#[tokio::test]
async fn oversized_keys_are_refused_alike_by_both_stores() {
    use itsm_bridge::inbound::common_schema::ALERT_ID_MAX;
    for t in [
        TestApp::spawn().await,
        Spawn::default().dynamodb().start().await,
    ] {
        Mock::given(method("POST"))
            .respond_with(created("INC0030001"))
            .mount(&t.itsm)
            .await;
        let mut body = metric_alert("x", "Fired");
        let longest = format!("/alerts/{}", "a".repeat(ALERT_ID_MAX - 8));
        body["data"]["essentials"]["alertId"] = json!(longest);
        let reply = t.post(&body).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        body["data"]["essentials"]["alertId"] = json!(format!("{longest}a"));
        let reply = t.post(&body).await;
        assert_eq!((reply.status, reply.outcome()), (400, "invalid_alert"));
        assert!(
            reply.message().contains("at most 1024"),
            "{}",
            reply.message()
        );
        body["data"]["essentials"]["alertId"] = json!("/alerts/time");
        body["data"]["essentials"]["firedDateTime"] = json!("9".repeat(101));
        assert_eq!(t.post(&body).await.status, 400);
    }
}
