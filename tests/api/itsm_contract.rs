//! The `ItsmClient` contract (`src/domain/ports.rs`), one suite for every
//! ITSM client: ServiceNow and BMC Helix against stateful fakes that keep
//! incidents and answer with the vendors' envelopes, and the dry-run
//! client. A new ITSM joins by adding its fake and one test here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use itsm_bridge::adapters::bmc::{BmcClient, BmcConfig, BmcFields, BmcFormat, BmcLogin};
use itsm_bridge::adapters::dryrun::DryRun;
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::{
    Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig, ServiceNowFormat,
};
use itsm_bridge::domain::alert::Severity;
use itsm_bridge::domain::correlation::{IncidentRef, correlation_key};
use itsm_bridge::domain::mapping::{IncidentDraft, Resolution};
use itsm_bridge::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{BMC_PASSWORD, BMC_USER, SN_PASSWORD, SN_USER};

fn draft(key: &str) -> IncidentDraft {
    IncidentDraft {
        correlation_key: key.into(),
        correlation_label: "Azure Monitor cpu-high a1".into(),
        short_description: "[Sev2] cpu-high on vm-1".into(),
        description: "Alert rule: cpu-high\n".into(),
        severity: Severity::Sev2,
        impact: 2,
        urgency: 2,
        configuration_item: None,
        assignment_group: None,
        category: None,
        caller: None,
        fields: Default::default(),
    }
}

fn resolution() -> Resolution {
    Resolution {
        notes: "Resolved automatically by itsm-bridge".into(),
    }
}

/// What every client does with incidents it can see.
async fn contract(itsm: &dyn ItsmClient, name: &str) {
    let key = correlation_key(&format!("/alerts/{name}"));
    assert_eq!(itsm.find(&key).await, Ok(None), "nothing yet");
    let incident = itsm.create(&draft(&key)).await.expect("create");
    assert!(!incident.id.is_empty() && !incident.number.is_empty());
    assert_eq!(
        itsm.find(&key).await,
        Ok(Some(incident.clone())),
        "find recovers a create"
    );
    let other = correlation_key("/alerts/someone-else");
    assert_eq!(itsm.find(&other).await, Ok(None), "only the exact key");

    for unsafe_key in ["", "azmon-1^ORactive=true", "a\" OR 'x'='x", "a b"] {
        assert!(
            matches!(
                itsm.find(unsafe_key).await,
                Err(ItsmError::Rejected { status: 0, .. })
            ),
            "{unsafe_key:?} must never reach a query"
        );
    }

    itsm.note(&incident, "a note").await.expect("note");
    assert_eq!(
        itsm.resolve(&incident, &resolution()).await,
        Ok(ResolveOutcome::Resolved)
    );
    let again = itsm.resolve(&incident, &resolution()).await;
    assert!(
        matches!(
            again,
            Ok(ResolveOutcome::Resolved | ResolveOutcome::AlreadyClosed)
        ),
        "resolving twice is harmless: {again:?}"
    );
    itsm.reopen(&incident, "fired again").await.expect("reopen");
    assert_eq!(
        itsm.resolve(&incident, &resolution()).await,
        Ok(ResolveOutcome::Resolved),
        "a reopened incident resolves again"
    );
}

/// What a client that sees the ITSM says of incidents that do not exist.
async fn contract_unknown_incident(itsm: &dyn ItsmClient, ghost: IncidentRef) {
    assert_eq!(
        itsm.resolve(&ghost, &resolution()).await,
        Ok(ResolveOutcome::NotFound)
    );
    assert!(matches!(
        itsm.note(&ghost, "n").await,
        Err(ItsmError::Rejected { .. })
    ));
    assert!(matches!(
        itsm.reopen(&ghost, "n").await,
        Err(ItsmError::Rejected { .. })
    ));
}

/// How failures are told apart: transient ones from those someone must fix.
async fn contract_failures(itsm: &dyn ItsmClient, refused: &dyn ItsmClient, fake: &Fake) {
    let key = correlation_key("/alerts/failures");
    fake.fail_next(ResponseTemplate::new(503).set_body_string("Service Unavailable"));
    let down = itsm.create(&draft(&key)).await.unwrap_err();
    assert!(
        matches!(down, ItsmError::Unavailable(_)) && down.is_transient(),
        "{down:?}"
    );

    fake.fail_next(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "7")
            .set_body_json(json!({"error": {"message": "Too many requests"}})),
    );
    match itsm.find(&key).await {
        Err(ItsmError::Throttled { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("429 must be Throttled with its Retry-After: {other:?}"),
    }

    let refusal = refused.create(&draft(&key)).await.unwrap_err();
    assert!(
        matches!(refusal, ItsmError::Rejected { status: 401, .. }) && !refusal.is_transient(),
        "{refusal:?}"
    );
    assert_eq!(
        itsm.find(&key).await,
        Ok(None),
        "no failed call created one"
    );
}

#[tokio::test]
async fn servicenow_keeps_the_contract() {
    let (server, fake) = Fake::serve(Vendor::ServiceNow).await;
    let client = |password: &str| {
        let config = ServiceNowConfig {
            instance_url: server.uri().parse().unwrap(),
            fields: IncidentFields::default(),
            timeout: Duration::from_secs(2),
        };
        let credentials = Credentials::Basic {
            username: SN_USER.into(),
            password: password.into(),
        };
        ServiceNowClient::new(config, CredentialSource::Fixed(credentials), None).unwrap()
    };
    let itsm = client(SN_PASSWORD);
    contract(&itsm, "servicenow").await;
    let ghost = IncidentRef {
        id: "0123456789abcdef0123456789abcdef".into(),
        number: "INC9999999".into(),
    };
    contract_unknown_incident(&itsm, ghost).await;
    contract_failures(&itsm, &client("wrong"), &fake).await;
}

#[tokio::test]
async fn bmc_helix_keeps_the_contract() {
    let (server, fake) = Fake::serve(Vendor::Bmc).await;
    let client = |password: &str| {
        let config = BmcConfig {
            url: server.uri().parse().unwrap(),
            fields: BmcFields::default(),
            timeout: Duration::from_secs(2),
        };
        let login = BmcLogin {
            username: BMC_USER.into(),
            password: password.into(),
        };
        BmcClient::new(config, CredentialSource::Fixed(login), None).unwrap()
    };
    let itsm = client(BMC_PASSWORD);
    contract(&itsm, "bmc").await;
    let ghost = IncidentRef {
        id: "INC000000099999".into(),
        number: "INC000000099999".into(),
    };
    contract_unknown_incident(&itsm, ghost).await;
    contract_failures(&itsm, &client("wrong"), &fake).await;
}

#[tokio::test]
async fn dry_run_keeps_the_contract() {
    // It cannot see an ITSM, so it has no unknown incidents and no failures.
    for format in [
        Box::new(ServiceNowFormat::default()) as Box<dyn itsm_bridge::adapters::wire::WireFormat>,
        Box::new(BmcFormat::default()),
    ] {
        let itsm = DryRun::new(format, None);
        contract(&itsm, "dry-run").await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Vendor {
    ServiceNow,
    Bmc,
}

/// A fake ITSM that keeps incidents, so the contract's sequences mean
/// something; `fail_next` answers the next request with a failure.
#[derive(Clone)]
struct Fake {
    vendor: Vendor,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    incidents: Vec<Value>,
    failures: VecDeque<ResponseTemplate>,
}

impl Fake {
    async fn serve(vendor: Vendor) -> (MockServer, Fake) {
        let server = MockServer::start().await;
        let fake = Fake {
            vendor,
            state: Arc::default(),
        };
        Mock::given(any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (server, fake)
    }

    fn fail_next(&self, answer: ResponseTemplate) {
        self.state.lock().unwrap().failures.push_back(answer);
    }
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        match self.vendor {
            Vendor::ServiceNow => servicenow(&mut state, req),
            Vendor::Bmc => bmc(&mut state, req),
        }
    }
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap_or(Value::Null)
}

/// The Table API: Basic auth, `{"result": …}`, the error envelope, 404 for
/// an unknown record, 403 for an update of a closed one.
fn servicenow(state: &mut FakeState, req: &Request) -> ResponseTemplate {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{SN_USER}:{SN_PASSWORD}"));
    let error = |status: u16, message: &str, detail: &str| {
        ResponseTemplate::new(status).set_body_json(
            json!({"error": {"message": message, "detail": detail}, "status": "failure"}),
        )
    };
    let authorized = req
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Basic {basic}").as_bytes());
    if !authorized {
        return error(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
        );
    }
    if let Some(failure) = state.failures.pop_front() {
        return failure;
    }
    let path = req.url.path();
    let id = path.strip_prefix("/api/now/table/incident/");
    let at = |incidents: &Vec<Value>, id: &str| incidents.iter().position(|i| i["sys_id"] == id);
    match (req.method.as_str(), id) {
        ("POST", None) if path == "/api/now/table/incident" => {
            let n = state.incidents.len() + 1;
            let incident = json!({"sys_id": format!("{n:032x}"), "number": format!("INC{n:07}"),
                "correlation_id": body(req)["correlation_id"], "state": "1"});
            state.incidents.push(incident.clone());
            ResponseTemplate::new(201).set_body_json(json!({"result": incident}))
        }
        ("GET", None) => {
            let q = query(req, "sysparm_query").unwrap_or_default();
            let key = q.strip_prefix("correlation_id=").unwrap_or("");
            let found: Vec<&Value> = state
                .incidents
                .iter()
                .filter(|i| i["correlation_id"] == key)
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"result": found}))
        }
        (method, Some(id)) => match at(&state.incidents, id) {
            None => error(
                404,
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            ),
            Some(i) if method == "GET" => {
                ResponseTemplate::new(200).set_body_json(json!({"result": state.incidents[i]}))
            }
            Some(i) if state.incidents[i]["state"] == "7" => error(
                403,
                "Operation Failed",
                "ACL Exception Update Failed due to security constraints",
            ),
            Some(i) => {
                if let Value::Object(fields) = body(req) {
                    for (k, v) in fields {
                        state.incidents[i][k] = v;
                    }
                }
                ResponseTemplate::new(200).set_body_json(json!({"result": state.incidents[i]}))
            }
        },
        _ => error(400, "Invalid request", path),
    }
}

/// The AR REST API: a plain-text AR-JWT from the login, entries under
/// `{"entries": [{"values": …}]}`, error arrays, 204 for an update.
fn bmc(state: &mut FakeState, req: &Request) -> ResponseTemplate {
    const TOKEN: &str = "contract-ar-jwt";
    let error = |status: u16, text: &str, number: u32| {
        ResponseTemplate::new(status).set_body_json(json!([{"messageType": "ERROR",
            "messageText": text, "messageNumber": number}]))
    };
    let path = req.url.path();
    if path == "/api/jwt/login" {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let given = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        return if given("username") == Some(BMC_USER) && given("password") == Some(BMC_PASSWORD) {
            ResponseTemplate::new(200).set_body_string(TOKEN)
        } else {
            error(401, "Authentication failed", 623)
        };
    }
    let authorized = req
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("AR-JWT {TOKEN}").as_bytes());
    if !authorized {
        return error(401, "Authentication failed", 623);
    }
    if let Some(failure) = state.failures.pop_front() {
        return failure;
    }
    let find = |incidents: &Vec<Value>, field: &str, value: &str| {
        incidents
            .iter()
            .position(|i| i["values"][field].as_str() == Some(value))
    };
    match (req.method.as_str(), path) {
        ("POST", "/api/arsys/v1/entry/HPD:IncidentInterface_Create") => {
            let n = state.incidents.len() + 1;
            let mut values = body(req)["values"].clone();
            let number = format!("INC{n:012}");
            values["Incident Number"] = json!(number);
            values["Request ID"] = json!(format!("{n:015}"));
            state.incidents.push(json!({"values": values}));
            ResponseTemplate::new(201).set_body_json(json!({"values": {"Incident Number": number}}))
        }
        ("GET", "/api/arsys/v1/entry/HPD:IncidentInterface") => {
            // Only the `'Field' = "value"` qualifications the client sends.
            let q = query(req, "q").unwrap_or_default();
            let Some((field, value)) = q
                .strip_prefix('\'')
                .and_then(|q| q.split_once("' = \""))
                .and_then(|(f, v)| Some((f, v.strip_suffix('"')?)))
            else {
                return error(400, "Invalid qualification", 1587);
            };
            let entries: Vec<&Value> = state
                .incidents
                .iter()
                .filter(|i| i["values"][field].as_str() == Some(value))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"entries": entries, "_links": {}}))
        }
        ("PUT", p) if p.starts_with("/api/arsys/v1/entry/HPD:IncidentInterface/") => {
            let id = p.rsplit('/').next().unwrap_or("");
            let Some(i) = find(&state.incidents, "Request ID", id) else {
                return error(404, "Entry does not exist in database", 302);
            };
            if let Value::Object(values) = body(req)["values"].clone() {
                for (k, v) in values {
                    state.incidents[i]["values"][k] = v;
                }
            }
            ResponseTemplate::new(204)
        }
        ("POST", "/api/arsys/v1/entry/HPD:WorkLog") => {
            let number = body(req)["values"]["Incident Number"]
                .as_str()
                .unwrap_or("")
                .to_string();
            match find(&state.incidents, "Incident Number", &number) {
                Some(_) => ResponseTemplate::new(201),
                None => error(400, "The incident does not exist", 1291053),
            }
        }
        _ => error(400, "Invalid request", 0),
    }
}
