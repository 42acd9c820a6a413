//! Faults and load: a store that fails, an ITSM that fails and stalls at
//! random under a burst with Azure-style retries, and logs that never carry
//! a secret. Figures printed here go into docs/RELIABILITY.md
//! (`cargo test --test api faults -- --nocapture`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use itsm_bridge::adapters::entra::EntraVerifier;
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::ServiceNowClient;
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::config::{CredentialsConfig, ItsmConfig};
use itsm_bridge::domain::correlation::{CorrelationRecord, RecordState};
use itsm_bridge::domain::ports::{CorrelationStore, StoreError};
use itsm_bridge::domain::state_machine::Bridge;
use itsm_bridge::inbound::http::App;
use serde_json::{Value, json};
use wiremock::matchers::{any, method};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

/// The test app's own ServiceNow client and verifier, around another store.
fn app_with_store(t: &TestApp, store: Arc<dyn CorrelationStore>) -> App {
    let ItsmConfig::ServiceNow(sn, CredentialsConfig::Fixed(credentials)) = &t.config.itsm else {
        panic!("fault tests use ServiceNow with fixed credentials")
    };
    let client = ServiceNowClient::new(
        sn.clone(),
        CredentialSource::Fixed(credentials.clone()),
        None,
    )
    .unwrap();
    App {
        verifier: Arc::new(EntraVerifier::new(t.config.entra.clone(), t.clock())),
        bridge: Bridge::new(
            Arc::new(client),
            store,
            t.config.settings.clone(),
            t.clock(),
        ),
        path: "/".into(),
        metrics: None,
        delivery: None,
        queue: itsm_bridge::inbound::QueueHandle::None,
        delivery_config: Default::default(),
        sync: None,
        intake: None,
        sync_feed: None,
        groups: None,
    }
}

/// A store whose writes fail after `ok_puts` of them succeeded.
struct Failing {
    inner: MemoryStore,
    ok_puts: AtomicUsize,
    reads_fail: bool,
}

#[async_trait]
impl CorrelationStore for Failing {
    async fn get(&self, alert_id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        if self.reads_fail {
            return Err(StoreError::Unavailable(
                "DynamoDB: ProvisionedThroughputExceededException".into(),
            ));
        }
        self.inner.get(alert_id, now).await
    }
    async fn put(
        &self,
        record: &CorrelationRecord,
        expected: Option<u64>,
        now: i64,
    ) -> Result<(), StoreError> {
        if self
            .ok_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(StoreError::Unavailable(
                "DynamoDB: ThrottlingException".into(),
            ));
        }
        self.inner.put(record, expected, now).await
    }
}

#[tokio::test]
async fn a_store_that_is_down_means_503_and_no_itsm_call() {
    let t = TestApp::spawn().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&t.itsm)
        .await;
    let store = Arc::new(Failing {
        inner: MemoryStore::new(),
        ok_puts: AtomicUsize::new(0),
        reads_fail: true,
    });
    let app = app_with_store(&t, store);
    let auth = format!("Bearer {}", t.token());
    for condition in ["Fired", "Resolved"] {
        let reply = send_to(
            &app,
            "POST",
            Some(&auth),
            &metric_alert("store-down", condition).to_string(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.outcome()),
            (503, "store_unavailable"),
            "{:?}",
            reply.body
        );
    }
}

#[tokio::test]
async fn an_incident_whose_record_could_not_be_written_is_found_again() {
    let t = TestApp::spawn().await;
    let fired = metric_alert("unrecorded", "Fired");
    let key = itsm_bridge::domain::correlation::correlation_key(&alert_id(&fired));
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"result": {"sys_id": "s1", "number": "INC0030001"}})),
        )
        .expect(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"result": [{"sys_id": "s1", "number": "INC0030001", "correlation_id": key}]}),
        ))
        .mount(&t.itsm)
        .await;
    // The claim is written, the incident created, then the store throttles.
    let store = Arc::new(Failing {
        inner: MemoryStore::new(),
        ok_puts: AtomicUsize::new(1),
        reads_fail: false,
    });
    let app = app_with_store(&t, store.clone());
    let auth = format!("Bearer {}", t.token());
    let reply = send_to(&app, "POST", Some(&auth), &fired.to_string()).await;
    assert_eq!((reply.status, reply.outcome()), (503, "store_unavailable"));
    // Store back; Azure retries after the claim's lease: found, not created again.
    store.ok_puts.store(usize::MAX, Ordering::SeqCst);
    t.advance(61);
    let reply = send_to(&app, "POST", Some(&auth), &fired.to_string()).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (201, "recovered"),
        "{:?}",
        reply.body
    );
}

/// An in-memory ServiceNow that fails and stalls at random (deterministically).
#[derive(Default)]
struct FlakyServiceNow {
    state: Mutex<Flaky>,
}

#[derive(Default)]
struct Flaky {
    calls: u64,
    /// correlation key → (sys_id, creates, resolved)
    incidents: HashMap<String, (String, u32, bool)>,
    failures: u64,
    stalls: u64,
}

impl Respond for FlakyServiceNow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        let roll = s.calls.wrapping_mul(2_654_435_761) % 100;
        let fail = || {
            ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "Service Unavailable", "detail": ""}, "status": "failure"}))
        };
        match req.method.as_str() {
            "POST" if roll < 30 => {
                s.failures += 1;
                fail()
            }
            "POST" => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let key = body["correlation_id"].as_str().unwrap().to_string();
                let sys_id = format!("{:032x}", s.calls);
                let entry = s.incidents.entry(key).or_insert((sys_id, 0, false));
                entry.1 += 1;
                let answer =
                    json!({"result": {"sys_id": entry.0, "number": format!("INC{}", entry.0)}});
                let mut response = ResponseTemplate::new(201).set_body_json(answer);
                if roll < 40 {
                    // Created, but the answer arrives after the client gave up.
                    s.stalls += 1;
                    response = response.set_delay(Duration::from_millis(500));
                }
                response
            }
            "GET" => {
                let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
                let key = query["sysparm_query"]
                    .trim_start_matches("correlation_id=")
                    .to_string();
                let found: Vec<Value> = s.incidents.get(&key).map_or(vec![], |(id, _, _)| {
                    vec![json!({"sys_id": id, "number": format!("INC{id}"), "correlation_id": key})]
                });
                ResponseTemplate::new(200).set_body_json(json!({"result": found}))
            }
            "PATCH" if roll < 30 => {
                s.failures += 1;
                fail()
            }
            "PATCH" => {
                let id = req.url.path().rsplit('/').next().unwrap().to_string();
                if let Some(entry) = s.incidents.values_mut().find(|e| e.0 == id) {
                    entry.2 = true;
                }
                ResponseTemplate::new(200).set_body_json(json!({"result": {"state": "6"}}))
            }
            _ => ResponseTemplate::new(405),
        }
    }
}

#[tokio::test]
async fn a_burst_against_a_flaky_itsm_loses_and_duplicates_nothing() {
    let t = Spawn::default()
        .var("ITSM_TIMEOUT_MS", "300")
        .var("ITSM_DEADLINE_MS", "1500")
        .start()
        .await;
    let fake = Arc::new(FlakyServiceNow::default());
    Mock::given(any())
        .respond_with(ArcRespond(fake.clone()))
        .mount(&t.itsm)
        .await;
    let alerts = 100;
    let events_of = |rounds: &[&str]| -> Vec<Value> {
        rounds
            .iter()
            .flat_map(|round| (0..alerts).map(move |a| metric_alert(&format!("burst-{a}"), round)))
            .collect()
    };
    // Per alert: Fired and a duplicate; once Azure has had its 2xx for them
    // (the condition clears minutes later), Resolved, a late duplicate
    // Fired and a duplicate Resolved. Sending a Resolved while its Fired is
    // still being retried would test another case: see `queue::`.
    let phases = [
        events_of(&["Fired", "Fired"]),
        events_of(&["Resolved", "Fired", "Resolved"]),
    ];
    let events = phases.iter().map(Vec::len).sum::<usize>();
    let mut answered_503 = 0;
    for phase in phases {
        let mut pending = phase;
        // Azure's way: whatever got a 503 is delivered again, a little later.
        for _ in 0..40 {
            let mut next = Vec::new();
            for chunk in pending.chunks(25) {
                let replies = futures::future::join_all(chunk.iter().map(|e| t.post(e))).await;
                for (event, reply) in chunk.iter().zip(replies) {
                    assert!(matches!(reply.status, 200 | 201 | 503), "{:?}", reply.body);
                    if reply.status == 503 {
                        next.push(event.clone());
                    }
                }
            }
            answered_503 += next.len();
            pending = next;
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Claims of attempts that gave up run out.
            t.advance(61);
        }
        assert!(
            pending.is_empty(),
            "{} deliveries never succeeded",
            pending.len()
        );
    }

    let mut lost = 0;
    for a in 0..alerts {
        let id = alert_id(&metric_alert(&format!("burst-{a}"), "Fired"));
        let record = t.record(&id).await.unwrap();
        if record.state != RecordState::Resolved {
            lost += 1;
        }
    }
    let s = fake.state.lock().unwrap();
    let created: u32 = s.incidents.values().map(|e| e.1).sum();
    let duplicates = created as usize - s.incidents.len();
    let unresolved = s.incidents.values().filter(|e| !e.2).count();
    println!(
        "faults: {events} events, {} ITSM calls ({} failed with 503, {} stalled past the timeout), {answered_503} answers 503 (retried), \
         incidents {}, duplicates {duplicates}, alerts lost {}, resolves lost {unresolved}, records not resolved {lost}",
        s.calls,
        s.failures,
        s.stalls,
        s.incidents.len(),
        alerts - s.incidents.len(),
    );
    assert!(s.failures > 0 && s.stalls > 0, "the fake did inject faults");
    assert_eq!(s.incidents.len(), alerts, "every alert has an incident");
    assert_eq!(duplicates, 0, "no alert has two");
    assert_eq!(unresolved, 0, "every incident was resolved");
    assert_eq!(lost, 0);
}

/// wiremock wants an owned responder; this shares one.
struct ArcRespond(Arc<FlakyServiceNow>);

impl Respond for ArcRespond {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req)
    }
}
