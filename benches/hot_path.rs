//! The hot path against its floors: what no implementation can avoid (one
//! RS256 verification, parsing the JSON) and what ours adds on top.
//!
//! cargo bench --bench hot_path
//!
//! The ITSM and store are in-memory fakes here: this measures the
//! function's own work, not the network.

use std::sync::Arc;

use async_trait::async_trait;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::entra::{DevKey, EntraConfig, EntraVerifier};
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::domain::correlation::IncidentRef;
use itsm_bridge::domain::incident::mapping::{IncidentDraft, Resolution};
use itsm_bridge::domain::ports::{ItsmClient, ItsmError, ResolveOutcome, TokenVerifier};
use itsm_bridge::domain::settings::Settings;
use itsm_bridge::domain::state_machine::Bridge;
use itsm_bridge::inbound::App;
use itsm_bridge::inbound::common_schema;
use itsm_bridge::inbound::http;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Value, json};

// Measured with mimalloc, as before the Lambda binary moved to the system
// allocator (BENCHMARKS.md §11): these figures compare with earlier runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure-samples");

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

fn metric_body() -> Vec<u8> {
    serde_json::to_vec(&fixture("test-metric-static-fired.json")).unwrap()
}

/// A log search (v1) alert with search results, grown to about 200 KB of the
/// 256 KB Azure allows.
fn large_log_body() -> Vec<u8> {
    let mut body = fixture("test-log-v1-number-of-results-fired.json");
    let table = &mut body["data"]["alertContext"]["SearchResults"]["tables"][0];
    let row = table["rows"][0].clone();
    let rows = table["rows"].as_array_mut().unwrap();
    while serde_json::to_vec(rows).unwrap().len() < 200_000 {
        rows.push(row.clone());
    }
    serde_json::to_vec(&body).unwrap()
}

fn jwk_str<'a>(jwk: &'a Value, field: &str) -> &'a str {
    jwk[field].as_str().unwrap()
}

struct Instant;

#[async_trait]
impl ItsmClient for Instant {
    fn kind(&self) -> &'static str {
        "bench"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        Ok(IncidentRef {
            id: "0".into(),
            number: "INC0".into(),
        })
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        Ok(None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        Ok(ResolveOutcome::Resolved)
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Ok(())
    }
}

struct Setup {
    key: DevKey,
    config: EntraConfig,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let key = DevKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = key.local_config(&dir.path().join("jwks.json"));
    Setup {
        key,
        config,
        _dir: dir,
    }
}

fn floors(c: &mut Criterion) {
    let s = setup();
    let token = s.key.sign(&DevKey::claims_for(
        &s.config,
        jsonwebtoken::get_current_timestamp() as i64,
    ));
    let (message, signature) = token.rsplit_once('.').unwrap();
    let jwk_value = s.key.jwks()["keys"][0].clone();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk_value.clone()).unwrap();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();
    c.bench_function("floor/rs256_verify", |b| {
        b.iter(|| {
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, Algorithm::RS256)
                .unwrap()
        })
    });
    // What jsonwebtoken's checked decode costs on top of the verification:
    // the header and claims decoded and validated (as the verifier does).
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Claims {
        iss: String,
        exp: i64,
        tid: Option<String>,
        ver: Option<String>,
        appid: Option<String>,
        azp: Option<String>,
    }
    let claims = DevKey::claims_for(&s.config, 0);
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&s.config.audiences);
    validation.set_issuer(&[claims["iss"].as_str().unwrap()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    c.bench_function("floor/jwt_decode_and_validate", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).unwrap())
    });
    // The same verification with the key parsed once (what a cache of
    // aws-lc-rs keys per kid would give): the lower floor.
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let parsed = aws_lc_rs::signature::RsaPublicKeyComponents {
        n: b64(jwk_str(&jwk_value, "n")),
        e: b64(jwk_str(&jwk_value, "e")),
    }
    .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
    .unwrap();
    c.bench_function("floor/rs256_verify_parsed_key", |b| {
        b.iter(|| {
            parsed
                .verify_sig(message.as_bytes(), &b64(signature))
                .unwrap()
        })
    });
    let (metric, log) = (metric_body(), large_log_body());
    c.bench_function("floor/json_parse_metric", |b| {
        b.iter(|| serde_json::from_slice::<Value>(&metric).unwrap())
    });
    // Below every parser: reading the JSON without keeping anything.
    c.bench_function("floor/json_scan_only_metric", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(&metric).unwrap())
    });
    c.bench_function("floor/json_parse_log_v1_200k", |b| {
        b.iter(|| serde_json::from_slice::<Value>(&log).unwrap())
    });
    c.bench_function("ours/alert_parse_metric", |b| {
        b.iter(|| common_schema::parse(&metric).unwrap())
    });
    c.bench_function("ours/alert_parse_log_v1_200k", |b| {
        b.iter(|| common_schema::parse(&log).unwrap())
    });
}

fn request(token: &str, body: &Value) -> lambda_http::Request {
    http::event::request(&http::event::function_url_event(
        "POST",
        Some(&format!("Bearer {token}")),
        &body.to_string(),
    ))
}

/// Times one event through `http::handle`; `setup` (untimed) gives the app
/// and the request, and the app is dropped outside the timing too.
fn bench_event(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    status: u16,
    mut setup: impl FnMut() -> (App, lambda_http::Request),
) {
    c.bench_function(name, |b| {
        b.iter_batched(
            &mut setup,
            |(app, req)| {
                let response = rt.block_on(http::handle(&app, req));
                assert_eq!(response.status(), status);
                app
            },
            BatchSize::SmallInput,
        )
    });
}

fn handler(c: &mut Criterion) {
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = s.key.sign(&DevKey::claims_for(
        &s.config,
        jsonwebtoken::get_current_timestamp() as i64,
    ));
    // A fresh (empty) store per event: the fake must not grow by millions
    // of records over a run and measure its own rehashing instead.
    let app = |verifier: &Arc<EntraVerifier>| App {
        verifier: verifier.clone(),
        bridge: Bridge::new(
            Arc::new(Instant),
            Arc::new(MemoryStore::new()),
            Settings::default(),
            system_clock(),
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
    };
    let template = fixture("test-metric-static-fired.json");
    let mut n = 0u64;
    let mut fresh_alert = move || {
        n += 1;
        let mut body = template.clone();
        body["data"]["essentials"]["alertId"] = json!(format!(
            "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/{n}"
        ));
        body
    };
    for (name, cache) in [
        ("handler/fired_cached_token", 4096),
        ("handler/fired_new_token", 0),
    ] {
        let verifier = Arc::new(EntraVerifier::with_token_cache(
            s.config.clone(),
            system_clock(),
            cache,
        ));
        // The first call loads the key set; the measured ones are warm.
        rt.block_on(http::handle(
            &app(&verifier),
            request(&token, &fresh_alert()),
        ));
        bench_event(c, &rt, name, 201, || {
            (app(&verifier), request(&token, &fresh_alert()))
        });
    }

    // The other warm events, token cached: a Resolved for an open incident
    // (one ITSM resolve, two store operations) and a duplicate Fired (one
    // store operation). The store already holds the alert's record.
    let verifier = Arc::new(EntraVerifier::new(s.config.clone(), system_clock()));
    let template = fixture("test-metric-static-fired.json");
    let mut n = 0u64;
    let mut fired_then = move |condition: &str| {
        n += 1;
        let mut fired = template.clone();
        fired["data"]["essentials"]["alertId"] = json!(format!(
            "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/other-{n}"
        ));
        let mut next = fired.clone();
        next["data"]["essentials"]["monitorCondition"] = json!(condition);
        if condition == "Resolved" {
            // As Azure's metric Resolved notifications carry it.
            next["data"]["essentials"]["resolvedDateTime"] = json!("2026-11-22T10:05:00.0000000Z");
        }
        (fired, next)
    };
    for (name, condition, status) in [
        ("handler/resolved_cached_token", "Resolved", 200),
        ("handler/duplicate_cached_token", "Fired", 200),
    ] {
        bench_event(c, &rt, name, status, || {
            let app = app(&verifier);
            let (fired, next) = fired_then(condition);
            rt.block_on(http::handle(&app, request(&token, &fired)));
            (app, request(&token, &next))
        });
    }

    // A large log search alert (200 KB), token cached: parsing dominates.
    let large: Value = serde_json::from_slice(&large_log_body()).unwrap();
    let mut n = 0u64;
    bench_event(
        c,
        &rt,
        "handler/fired_log_v1_200k_cached_token",
        201,
        || {
            n += 1;
            let mut body = large.clone();
            body["data"]["essentials"]["alertId"] =
                json!(format!("/subscriptions/s/alerts/log-{n}"));
            (app(&verifier), request(&token, &body))
        },
    );

    // The parts of (a), one at a time, to show where its time goes.
    let bearer = format!("Bearer {token}");
    rt.block_on(verifier.verify(Some(&bearer))).unwrap();
    c.bench_function("parts/token_cache_hit", |b| {
        b.iter(|| rt.block_on(verifier.verify(Some(&bearer))).unwrap())
    });
    let metric = metric_body();
    let parsed = common_schema::parse(&metric).unwrap();
    let bridge = app(&verifier).bridge;
    c.bench_function("parts/mapping_draft", |b| b.iter(|| bridge.draft(&parsed)));
    // The create request each ITSM's format makes of that draft (Jira's
    // carries the description as an ADF document).
    let draft = bridge.draft(&parsed).1;
    {
        use itsm_bridge::adapters::wire::WireFormat;
        let servicenow = itsm_bridge::adapters::servicenow::ServiceNowFormat::default();
        let jira = itsm_bridge::adapters::jira::JiraFormat::default();
        c.bench_function("parts/create_request_servicenow", |b| {
            b.iter(|| servicenow.create(&draft))
        });
        c.bench_function("parts/create_request_jira_adf", |b| {
            b.iter(|| jira.create(&draft))
        });
    }
    c.bench_function("parts/state_machine_create", |b| {
        b.iter_batched(
            || {
                (
                    app(&verifier).bridge,
                    common_schema::parse(&metric).unwrap(),
                )
            },
            |(bridge, alert)| {
                rt.block_on(bridge.process(&alert)).unwrap();
                bridge
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, floors, handler);
criterion_main!(benches);
