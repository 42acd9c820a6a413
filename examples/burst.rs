//! A burst through the real handler (Entra verifier, ServiceNow client,
//! state machine, in-memory or redb store) against a fast fake ServiceNow on
//! loopback: throughput on one core, latency percentiles, outcome counts.
//!
//! cargo run --release --example burst -- [--alerts 1000] [--store memory|redb]
//! /usr/bin/time -v target/release/examples/burst      (peak RSS)
//!
//! Each alert gets 10 events: 6 Fired (5 duplicates) and 4 Resolved (3
//! duplicates), interleaved across alerts; one alert in ten resolves first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::entra::{DevKey, EntraVerifier};
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::{
    Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig,
};
use itsm_bridge::adapters::store::{MemoryStore, RedbStore};
use itsm_bridge::domain::ports::CorrelationStore;
use itsm_bridge::domain::settings::Settings;
use itsm_bridge::domain::state_machine::Bridge;
use itsm_bridge::inbound::App;
use itsm_bridge::inbound::http;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

// The allocator the Lambda binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fake ServiceNow runs on its own thread and runtime, so the handler's
/// thread measures only the function's work and its HTTP client.
fn fake_servicenow() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = MockServer::builder().disable_request_recording().start().await;
            let created = json!({"result": {"sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010001"}});
            Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_body_json(created)).mount(&server).await;
            Mock::given(method("PATCH")).respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {}}))).mount(&server).await;
            Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []}))).mount(&server).await;
            tx.send(server.uri()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

fn request(token: &str, body: &str) -> lambda_http::Request {
    http::event::request(&http::event::function_url_event(
        "POST",
        Some(&format!("Bearer {token}")),
        body,
    ))
}

fn main() {
    let alerts: usize = arg("--alerts", "1000").parse().unwrap();
    let store_kind = arg("--store", "memory");
    let servicenow = fake_servicenow();
    let dir = tempfile::tempdir().unwrap();
    let key = DevKey::generate();
    let entra = key.local_config(&dir.path().join("jwks.json"));
    let token = key.sign(&DevKey::claims_for(&entra, system_clock()()));
    let itsm = ServiceNowClient::new(
        ServiceNowConfig {
            instance_url: servicenow.parse().unwrap(),
            fields: IncidentFields::default(),
            timeout: Duration::from_secs(5),
        },
        CredentialSource::Fixed(Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        }),
        None,
    )
    .unwrap();
    let store: Arc<dyn CorrelationStore> = match store_kind.as_str() {
        "redb" => Arc::new(RedbStore::open(dir.path()).unwrap()),
        _ => Arc::new(MemoryStore::new()),
    };
    let app = App {
        verifier: Arc::new(EntraVerifier::new(entra, system_clock())),
        bridge: Bridge::new(Arc::new(itsm), store, Settings::default(), system_clock()),
        path: "/".into(),
        metrics: None,
        delivery: None,
        queue: itsm_bridge::inbound::QueueHandle::None,
        delivery_config: Default::default(),
        sync: None,
        intake: None,
        sync_feed: None,
        groups: None,
    };

    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/azure-samples/test-metric-static-fired.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let body = |alert: usize, condition: &str| {
        let mut b = template.clone();
        b["data"]["essentials"]["alertId"] = json!(format!(
            "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/burst-{alert}"
        ));
        b["data"]["essentials"]["monitorCondition"] = json!(condition);
        b.to_string()
    };
    let order = |alert: usize| -> [&str; 10] {
        if alert % 10 == 9 {
            [
                "Resolved", "Fired", "Fired", "Resolved", "Fired", "Fired", "Resolved", "Fired",
                "Resolved", "Fired",
            ]
        } else {
            [
                "Fired", "Fired", "Fired", "Resolved", "Fired", "Resolved", "Fired", "Resolved",
                "Fired", "Resolved",
            ]
        }
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Warm: key set loaded, connection open, token verified once.
    rt.block_on(http::handle(
        &app,
        request(&token, &body(usize::MAX, "Resolved")),
    ));
    let mut latencies = Vec::with_capacity(alerts * 10);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let wall = Instant::now();
    for round in 0..10 {
        for alert in 0..alerts {
            let req = request(&token, &body(alert, order(alert)[round]));
            let t = Instant::now();
            let response = rt.block_on(http::handle(&app, req));
            latencies.push(t.elapsed());
            let text = match response.body() {
                lambda_http::Body::Text(t) => t.clone(),
                _ => String::new(),
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let outcome = v["outcome"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("?")
                .to_string();
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    let wall = wall.elapsed();
    let busy: Duration = latencies.iter().sum();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "{}",
        json!({
            "store": store_kind,
            "events": latencies.len(),
            "alerts": alerts,
            "wall_s": wall.as_secs_f64(),
            "events_per_s_one_core": latencies.len() as f64 / busy.as_secs_f64(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "max_us": pct(1.0),
            "outcomes": outcomes,
        })
    );
}
