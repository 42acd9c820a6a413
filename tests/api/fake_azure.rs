//! A loopback Azure for the sync role: Entra's token endpoint
//! (client-credentials flow, form-encoded, v2 answer) and the Alerts
//! Management API (change state with a comment, get an alert), with
//! Resource Manager's error envelope, scripted failures and alerts that
//! are gone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::TENANT;

pub const AZ_CLIENT_ID: &str = "99998888-aaaa-7777-bbbb-666655554444";
pub const AZ_SECRET: &str = "az-client-Secr3t~value";
pub const ARM_TOKEN: &str = "arm-access-token-for-the-bridge";
pub const API_VERSION: &str = "2019-05-05-preview";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub alert_id: String,
    pub new_state: String,
    pub comments: String,
}

#[derive(Default)]
struct State {
    token_requests: usize,
    changes: Vec<Change>,
    reads: usize,
    states: HashMap<String, String>,
    gone: HashSet<String>,
    failures: VecDeque<ResponseTemplate>,
    /// Apply the next change, then answer this late (a lost answer).
    slow_next: Option<Duration>,
    /// Where it listens: Resource Manager's URL, so the token's scope.
    uri: String,
    /// A certificate credential's public key (JWK) and `x5t#S256`.
    certificate: Option<(Value, String)>,
}

#[derive(Clone, Default)]
pub struct FakeAzure {
    state: Arc<Mutex<State>>,
}

impl FakeAzure {
    pub async fn serve() -> (MockServer, FakeAzure) {
        let server = MockServer::start().await;
        let fake = FakeAzure::default();
        fake.state.lock().unwrap().uri = server.uri();
        Mock::given(any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (server, fake)
    }

    /// The variables that point the sync role here.
    pub fn vars(server: &MockServer) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", AZ_CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", AZ_SECRET.into()),
            ("AZURE_AUTHORITY_HOST", server.uri()),
            ("AZURE_RESOURCE_MANAGER_URL", server.uri()),
            ("AZURE_TIMEOUT_MS", "500".into()),
            // Loopback changes are seconds old: no settling needed.
            ("SYNC_SETTLE_SECS", "0".into()),
        ]
    }

    pub fn changes(&self) -> Vec<Change> {
        self.state.lock().unwrap().changes.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    pub fn reads(&self) -> usize {
        self.state.lock().unwrap().reads
    }

    pub fn state_of(&self, alert_id: &str) -> Option<String> {
        self.state.lock().unwrap().states.get(alert_id).cloned()
    }

    pub fn gone(&self, alert_id: &str) {
        self.state.lock().unwrap().gone.insert(alert_id.into());
    }

    /// Accepts client assertions signed by `jwk`'s key for a certificate
    /// with this SHA-256 thumbprint (base64url).
    pub fn expect_certificate(&self, jwk: Value, thumbprint: &str) {
        self.state.lock().unwrap().certificate = Some((jwk, thumbprint.to_string()));
    }

    pub fn fail_next(&self, answer: ResponseTemplate) {
        self.state.lock().unwrap().failures.push_back(answer);
    }

    pub fn answer_next_late(&self, delay: Duration) {
        self.state.lock().unwrap().slow_next = Some(delay);
    }
}

fn arm_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"code": code, "message": message}}))
}

fn alert(alert_id: &str, state: &str) -> Value {
    json!({"id": alert_id, "type": "Microsoft.AlertsManagement/alerts", "name": "cpu alert",
        "properties": {"essentials": {"alertState": state, "monitorCondition": "Fired",
            "lastModifiedUserName": "itsm-bridge"}}})
}

impl Respond for FakeAzure {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        let path = req.url.path().to_string();
        if path == format!("/{TENANT}/oauth2/v2.0/token") {
            s.token_requests += 1;
            let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
            let scope = format!("{}/.default", s.uri);
            let endpoint = format!("{}{path}", s.uri);
            let proven = form.get("client_secret").map(String::as_str) == Some(AZ_SECRET)
                || form.get("client_assertion").is_some_and(|a| {
                    form.get("client_assertion_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                        && s.certificate
                            .as_ref()
                            .is_some_and(|(jwk, x5t)| assertion_ok(a, jwk, x5t, &endpoint))
                });
            let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some(AZ_CLIENT_ID)
                && proven
                && form.get("scope") == Some(&scope);
            return if ok {
                ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer",
                    "expires_in": 3599, "ext_expires_in": 3599, "access_token": ARM_TOKEN}))
            } else {
                ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0"}))
            };
        }
        let bearer = req
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == format!("Bearer {ARM_TOKEN}").as_bytes());
        if !bearer {
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            );
        }
        let query = |name: &str| {
            req.url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if query("api-version").as_deref() != Some(API_VERSION) {
            return arm_error(400, "InvalidApiVersionParameter", "unsupported api-version");
        }
        if let Some(failure) = s.failures.pop_front() {
            return failure;
        }
        let (alert_id, changing) = match path.strip_suffix("/changestate") {
            Some(id) => (id.to_string(), true),
            None => (path.clone(), false),
        };
        if s.gone.contains(&alert_id) {
            return arm_error(404, "ResourceNotFound", "The alert was not found.");
        }
        if !changing {
            s.reads += 1;
            let state = s.states.get(&alert_id).cloned().unwrap_or("New".into());
            return ResponseTemplate::new(200).set_body_json(alert(&alert_id, &state));
        }
        let new_state = query("newState").unwrap_or_default();
        if !["New", "Acknowledged", "Closed"].contains(&new_state.as_str()) {
            return arm_error(400, "InvalidParameter", "newState");
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        s.changes.push(Change {
            alert_id: alert_id.clone(),
            new_state: new_state.clone(),
            comments: body["comments"].as_str().unwrap_or("").to_string(),
        });
        s.states.insert(alert_id.clone(), new_state.clone());
        let answer = ResponseTemplate::new(200).set_body_json(alert(&alert_id, &new_state));
        match s.slow_next.take() {
            Some(delay) => answer.set_delay(delay),
            None => answer,
        }
    }
}

/// What Entra checks of a certificate's client assertion: PS256 (or RS256)
/// by the registered key, its `x5t#S256`, audience the token endpoint,
/// issuer and subject the client id.
fn assertion_ok(assertion: &str, jwk: &Value, x5t: &str, endpoint: &str) -> bool {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let Ok(header) = decode_header(assertion) else {
        return false;
    };
    if header.x5t_s256.as_deref() != Some(x5t) {
        return false;
    }
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap_or(""),
        jwk["e"].as_str().unwrap_or(""),
    );
    let Ok(key) = key else { return false };
    let mut validation = Validation::new(Algorithm::PS256);
    validation.algorithms = vec![Algorithm::PS256, Algorithm::RS256];
    validation.set_audience(&[endpoint]);
    validation.set_issuer(&[AZ_CLIENT_ID]);
    validation.sub = Some(AZ_CLIENT_ID.into());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    decode::<Value>(assertion, &key, &validation).is_ok()
}
