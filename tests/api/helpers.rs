//! The spawn helper: the real app (Entra verifier, ServiceNow client, redb
//! store) wired to a fake ServiceNow and a key set served over loopback HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use itsm_bridge::adapters::entra::DevKey;
use itsm_bridge::adapters::store::DynamoStore;
use itsm_bridge::bootstrap;
use itsm_bridge::config::{Config, Env};
use itsm_bridge::domain::correlation::CorrelationRecord;
use itsm_bridge::domain::ports::Clock;
use itsm_bridge::domain::ports::CorrelationStore;
use itsm_bridge::inbound::http::{self, App};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
pub const AUDIENCE: &str = "api://itsm-bridge-test";
pub const CLIENT_ID: &str = "11112222-bbbb-3333-cccc-4444dddd5555";
pub const ACTION_GROUP: &str = "461e8683-5575-4561-ac7f-899cc907d62a";
pub const SN_USER: &str = "bridge.integration";
pub const SN_PASSWORD: &str = "s3cret-Pa55word";
pub const BMC_USER: &str = "bridge.bmc";
pub const BMC_PASSWORD: &str = "bmc-Pa55word-9";
pub const JIRA_EMAIL: &str = "bridge@example.com";
pub const JIRA_TOKEN: &str = "ATATT3xFfGF0-jira-api-token";
pub const JIRA_PAT: &str = "NjM2-jira-dc-personal-access-token";

/// One RSA key per test binary: generating keys is the slow part.
pub fn key() -> &'static DevKey {
    static KEY: std::sync::OnceLock<DevKey> = std::sync::OnceLock::new();
    KEY.get_or_init(DevKey::generate)
}

pub struct TestApp {
    pub app: App,
    /// The fake ITSM: ServiceNow, or BMC Helix with `Spawn::bmc`.
    pub itsm: MockServer,
    pub entra: MockServer,
    pub store: Arc<dyn CorrelationStore>,
    /// The emulator's SDK configuration, when the test uses AWS.
    pub aws: Option<aws_config::SdkConfig>,
    /// Seconds added to the real clock, to move time.
    pub offset: Arc<AtomicI64>,
    pub config: Config,
    /// The delivery queues, with `Spawn::queue`.
    pub queues: Option<Queues>,
    _state: tempfile::TempDir,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub struct Spawn {
    pub vars: Vec<(&'static str, String)>,
    /// Keep correlation records in a fresh DynamoDB table on moto.
    pub dynamodb: bool,
    /// Take ServiceNow credentials from this secret on moto.
    pub secret: Option<Value>,
    /// A delivery queue (SQS FIFO on moto) with a dead-letter queue after
    /// this many receives.
    pub queue: Option<u32>,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            vars: vec![
                ("SERVICENOW_USERNAME", SN_USER.into()),
                ("SERVICENOW_PASSWORD", SN_PASSWORD.into()),
                ("SERVICENOW_ASSIGNMENT_GROUP", "Cloud Operations".into()),
                ("SERVICENOW_CALLER", "azure.monitor".into()),
                ("SERVICENOW_CATEGORY", "Infrastructure".into()),
                ("ITSM_TIMEOUT_MS", "1500".into()),
                // No room for a retry: each test that wants them says so.
                ("ITSM_DEADLINE_MS", "1500".into()),
            ],
            dynamodb: false,
            secret: None,
            queue: None,
        }
    }
}

impl Spawn {
    /// BMC Helix instead of ServiceNow, on the same fake server.
    pub fn bmc(self) -> Spawn {
        self.var("ITSM_KIND", "bmc-helix")
            .var("BMC_USERNAME", BMC_USER)
            .var("BMC_PASSWORD", BMC_PASSWORD)
            .var("BMC_FIRST_NAME", "Azure")
            .var("BMC_LAST_NAME", "Monitor")
            .var("BMC_ASSIGNED_GROUP", "Cloud Operations")
    }

    pub fn jira(self) -> Spawn {
        self.var("ITSM_KIND", "jira")
            .var("JIRA_PROJECT", "OPS")
            .var("JIRA_EMAIL", JIRA_EMAIL)
            .var("JIRA_API_TOKEN", JIRA_TOKEN)
    }

    pub fn dynamodb(mut self) -> Spawn {
        self.dynamodb = true;
        self
    }

    /// Store and forward through SQS FIFO on moto (and DynamoDB, as in AWS).
    pub fn queue(mut self, max_receive_count: u32) -> Spawn {
        self.queue = Some(max_receive_count);
        self.dynamodb = true;
        self
    }

    pub fn secret(mut self, secret: Value) -> Spawn {
        self.vars
            .retain(|(k, _)| !k.ends_with("_USERNAME") && !k.ends_with("_PASSWORD"));
        self.secret = Some(secret);
        self
    }

    pub fn var(mut self, k: &'static str, v: &str) -> Spawn {
        self.vars.retain(|(key, _)| *key != k);
        self.vars.push((k, v.to_string()));
        self
    }

    pub async fn start(self) -> TestApp {
        let itsm = MockServer::start().await;
        let entra = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/{TENANT}/discovery/v2.0/keys")))
            .respond_with(ResponseTemplate::new(200).set_body_json(key().jwks()))
            .mount(&entra)
            .await;
        let state = tempfile::tempdir().unwrap();
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("ENTRA_TENANT_ID", TENANT.to_string()),
            ("ENTRA_AUDIENCES", format!("{AUDIENCE},{CLIENT_ID}")),
            ("ENTRA_REQUIRED_ROLE", "ActionGroupsSecureWebhook".into()),
            ("ENTRA_AUTHORITY", entra.uri()),
            ("SERVICENOW_INSTANCE_URL", itsm.uri()),
            ("BMC_URL", itsm.uri()),
            ("JIRA_URL", itsm.uri()),
            ("STATE_DIR", state.path().display().to_string()),
            // The breaker probes a second after an outage: the tests' ITSM
            // comes back at once.
            ("BREAKER_PROBE_SECS", "1".to_string()),
        ]);
        vars.extend(self.vars.iter().map(|(k, v)| (*k, v.clone())));
        let aws = if self.dynamodb || self.secret.is_some() || self.queue.is_some() {
            Some(crate::moto::sdk_config().await)
        } else {
            None
        };
        let unique = crate::moto::unique("itsm-bridge");
        if self.dynamodb {
            let client = aws_sdk_dynamodb::Client::new(aws.as_ref().unwrap());
            DynamoStore::create_table(&client, &unique).await.unwrap();
            vars.insert("CORRELATION_TABLE", unique.clone());
        }
        if let Some(secret) = &self.secret {
            let client = aws_sdk_secretsmanager::Client::new(aws.as_ref().unwrap());
            client
                .create_secret()
                .name(&unique)
                .secret_string(secret.to_string())
                .send()
                .await
                .unwrap();
            vars.insert("ITSM_SECRET_ID", unique.clone());
        }
        let queues = match self.queue {
            Some(max_receive) => {
                let q = Queues::create(aws.as_ref().unwrap(), &unique, max_receive).await;
                vars.insert("DELIVERY_QUEUE_URL", q.url.clone());
                vars.insert("DEAD_LETTER_QUEUE_URL", q.dlq_url.clone());
                Some(q)
            }
            None => None,
        };
        let lookup = move |k: &str| vars.get(k).cloned();
        let config = Config::from_env(&Env::new(&lookup)).expect("test configuration is valid");
        let offset = Arc::new(AtomicI64::new(0));
        let clock: Clock = {
            let offset = offset.clone();
            Arc::new(move || now() + offset.load(Ordering::SeqCst))
        };
        let app = bootstrap::build(&config, aws.as_ref(), clock, None).unwrap();
        let store = app.bridge.store();
        TestApp {
            app,
            itsm,
            entra,
            store,
            aws,
            offset,
            config,
            queues,
            _state: state,
        }
    }
}

/// The delivery queue and its dead-letter queue on moto, as the SAM
/// template makes them.
pub struct Queues {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq_url: String,
}

impl Queues {
    async fn create(aws: &aws_config::SdkConfig, name: &str, max_receive: u32) -> Queues {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let client = aws_sdk_sqs::Client::new(aws);
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq.fifo"))
            .attributes(A::FifoQueue, "true")
            .attributes(A::MaximumMessageSize, "1048576")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&A::QueueArn]
            .clone();
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive});
        let url = client
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(A::FifoQueue, "true")
            .attributes(A::MaximumMessageSize, "1048576")
            .attributes(A::VisibilityTimeout, "30")
            .attributes(A::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        Queues {
            client,
            url,
            dlq_url,
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: lambda_http::http::HeaderMap,
}

impl Reply {
    pub fn outcome(&self) -> &str {
        self.body["outcome"]
            .as_str()
            .or(self.body["error"].as_str())
            .unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Spawn::default().start().await
    }

    /// A valid v1 token (Application ID URI audience), as Azure sends by default.
    pub fn token(&self) -> String {
        key().sign(&self.claims())
    }

    pub fn claims(&self) -> Value {
        DevKey::claims_for(&self.config.entra, now())
    }

    pub async fn post(&self, body: &Value) -> Reply {
        self.send(
            "POST",
            Some(&format!("Bearer {}", self.token())),
            &body.to_string(),
        )
        .await
    }

    pub async fn send(&self, verb: &str, authorization: Option<&str>, body: &str) -> Reply {
        send_to(&self.app, verb, authorization, body).await
    }

    /// The app's clock: real time plus what `advance` added.
    pub fn clock(&self) -> Clock {
        let offset = self.offset.clone();
        Arc::new(move || now() + offset.load(Ordering::SeqCst))
    }

    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }

    pub async fn record(&self, alert_id: &str) -> Option<CorrelationRecord> {
        self.store
            .get(alert_id, now() + self.offset.load(Ordering::SeqCst))
            .await
            .unwrap()
    }
}

/// One request through `app`'s handler, as the function URL would deliver it.
pub async fn send_to(app: &App, verb: &str, authorization: Option<&str>, body: &str) -> Reply {
    send_event(
        app,
        &http::event::function_url_event(verb, authorization, body),
    )
    .await
}

/// A whole function URL event (edited as a test needs) through `app`'s handler.
pub async fn send_event(app: &App, event: &Value) -> Reply {
    let response = http::handle(app, http::event::request(event)).await;
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a JSON text body, got {other:?}"),
    };
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body,
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/azure-samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A metric alert (Azure's own test payload) with its own alert id.
pub fn metric_alert(id: &str, condition: &str) -> Value {
    let mut body = fixture("test-metric-static-fired.json");
    let e = &mut body["data"]["essentials"];
    e["alertId"] = json!(format!(
        "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.AlertsManagement/alerts/{id}"
    ));
    e["monitorCondition"] = json!(condition);
    if condition == "Resolved" {
        e["resolvedDateTime"] = json!("2025-04-15T18:32:12.8515284Z");
    }
    body
}

pub fn alert_id(body: &Value) -> String {
    body["data"]["essentials"]["alertId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Matches a form-encoded body containing `pair` (as sent, encoded).
pub fn body_partial_form(pair: &'static str) -> impl wiremock::Match {
    move |req: &wiremock::Request| {
        String::from_utf8_lossy(&req.body)
            .split('&')
            .any(|p| p == pair)
    }
}

/// The sys_id of the one incident the fake ServiceNow creates.
pub const SYS_ID: &str = "9d385017c611228701d22104cc95c371";

/// ServiceNow's answer to a created incident: 201, `Location`, the record.
pub fn created(number: &str) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .insert_header(
            "Location",
            format!("https://dev.service-now.com/api/now/table/incident/{SYS_ID}"),
        )
        .set_body_json(json!({"result": {"sys_id": SYS_ID, "number": number}}))
}

/// The correlation key the state machine gives `alert`'s first incident.
pub fn key_of(alert: &itsm_bridge::domain::alert::Alert) -> String {
    itsm_bridge::domain::correlation::correlation_key(&alert.alert_id)
}
