//! Sync rounds through the real clients (ServiceNow change feed, Entra
//! token, Alerts Management) against loopback fakes, with the memory store:
//! how long a round takes to close N alerts, and a quiet round that finds
//! them all done. `--azure-ms` adds Resource Manager's latency to each call.
//!
//! cargo run --release --example sync_round -- [--alerts 1000] [--azure-ms 0]

use std::sync::Arc;
use std::time::{Duration, Instant};

use itsm_bridge::adapters::azure::{
    AzureAlerts, AzureConfig, AzureCredential, DEFAULT_API_VERSION,
};
use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::{
    Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig,
};
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::domain::correlation::{
    AzureSync, CorrelationRecord, IncidentRef, RecordState, correlation_key,
};
use itsm_bridge::domain::ports::CorrelationStore;
use itsm_bridge::domain::sync::{ActionOutcome, AlertSync, SyncSettings};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn alert_id(n: usize) -> String {
    format!(
        "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.AlertsManagement/alerts/{n:036}"
    )
}

/// ServiceNow's answer to the change query: every incident resolved a
/// minute ago, paged by `sysparm_offset` (all in one second, as a burst is).
struct Changes {
    incidents: Vec<Value>,
}

impl Respond for Changes {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = |k: &str| {
            req.url
                .query_pairs()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let (limit, offset) = (
            q("sysparm_limit").unwrap_or(100),
            q("sysparm_offset").unwrap_or(0),
        );
        let page: Vec<&Value> = self.incidents.iter().skip(offset).take(limit).collect();
        ResponseTemplate::new(200).set_body_json(json!({ "result": page }))
    }
}

/// Fakes on their own thread and runtime, so the round's thread measures
/// only the function's work and its HTTP clients.
fn fakes(alerts: usize, azure_ms: u64, updated: String) -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let servicenow = MockServer::builder()
                .disable_request_recording()
                .start()
                .await;
            let incidents = (0..alerts)
                .map(|n| {
                    json!({"sys_id": format!("{n:032x}"), "number": format!("INC{n:07}"),
                    "state": "6", "correlation_id": correlation_key(&alert_id(n)),
                    "sys_updated_on": updated, "sys_updated_by": "jane.doe"})
                })
                .collect();
            Mock::given(method("GET"))
                .respond_with(Changes { incidents })
                .mount(&servicenow)
                .await;
            let azure = MockServer::builder()
                .disable_request_recording()
                .start()
                .await;
            Mock::given(path_regex("/oauth2/v2.0/token$"))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"}),
                ))
                .mount(&azure)
                .await;
            Mock::given(path_regex("/changestate$"))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(
                            json!({"properties": {"essentials": {"alertState": "Closed"}}}),
                        )
                        .set_delay(Duration::from_millis(azure_ms)),
                )
                .mount(&azure)
                .await;
            tx.send((servicenow.uri(), azure.uri())).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let alerts: usize = arg("--alerts", "1000").parse().unwrap();
    let azure_ms: u64 = arg("--azure-ms", "0").parse().unwrap();
    let now = (system_clock())();
    let updated = time::OffsetDateTime::from_unix_timestamp(now - 60)
        .unwrap()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    let (servicenow, azure) = fakes(alerts, azure_ms, updated);
    let store = Arc::new(MemoryStore::new());
    for n in 0..alerts {
        let id = alert_id(n);
        let record = CorrelationRecord {
            correlation_key: correlation_key(&id),
            alert_id: id,
            itsm: "servicenow".into(),
            state: RecordState::Open,
            incident: Some(IncidentRef {
                id: format!("{n:032x}"),
                number: format!("INC{n:07}"),
            }),
            fired_at: None,
            resolved_at: None,
            lease_until: 0,
            updated_at: now,
            expires_at: now + 86_400,
            version: 1,
            queued_seq: 0,
            delivered_seq: 0,
            queued_at: 0,
            queued_digest: None,
            queue: Default::default(),
            look_until: 0,
            azure: AzureSync::default(),
        };
        store.put(&record, None, now).await.unwrap();
    }
    let itsm = Arc::new(
        ServiceNowClient::new(
            ServiceNowConfig {
                instance_url: servicenow.parse().unwrap(),
                fields: IncidentFields::default(),
                timeout: Duration::from_secs(5),
            },
            CredentialSource::Fixed(Credentials::Basic {
                username: "bridge".into(),
                password: "pw".into(),
            }),
            None,
        )
        .unwrap(),
    );
    let base: url::Url = format!("{azure}/").parse().unwrap();
    let alerts_api = Arc::new(
        AzureAlerts::new(
            &AzureConfig {
                tenant_id: "t".into(),
                client_id: "c".into(),
                authority: base.clone(),
                resource_manager: base,
                api_version: DEFAULT_API_VERSION.into(),
                timeout: Duration::from_secs(5),
            },
            CredentialSource::Fixed(AzureCredential::Secret("s".into())),
        )
        .unwrap(),
    );
    let settings = SyncSettings {
        settle_secs: 0,
        budget: Duration::from_secs(3600),
        ..SyncSettings::default()
    };
    let sync = AlertSync::new(itsm, store, alerts_api, settings, system_clock());
    let started = Instant::now();
    let first = sync.round().await.unwrap();
    let busy = started.elapsed();
    let started = Instant::now();
    let quiet = sync.round().await.unwrap();
    let idle = started.elapsed();
    println!(
        "{alerts} alerts resolved by people, Azure latency {azure_ms} ms: round closed {} in {:.2} s \
         ({:.2} ms per alert); the next round read {} changes and sent {} in {:.0} ms",
        first.count(ActionOutcome::Sent),
        busy.as_secs_f64(),
        busy.as_secs_f64() * 1000.0 / alerts as f64,
        quiet.examined,
        quiet.count(ActionOutcome::Sent),
        idle.as_secs_f64() * 1000.0
    );
}
