//! Stateful fake ITSMs: they keep incidents, so sequences of calls mean
//! something, and answer with the vendors' envelopes. A fake can be taken
//! down (503 for everything) and brought back, and told to fail the next
//! requests with a given answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_changes::{Touch, ar_time, sn_time};
use crate::fake_limit::Bucket;
use crate::helpers::{BMC_PASSWORD, BMC_USER, SN_PASSWORD, SN_USER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    ServiceNow,
    Bmc,
    Jira,
}

/// A fake ITSM that keeps incidents, so the contract's sequences mean
/// something; `fail_next` answers the next request with a failure.
#[derive(Clone)]
pub struct Fake {
    vendor: Vendor,
    state: Arc<Mutex<FakeState>>,
    down: Arc<AtomicBool>,
    /// 429s answered by the rate limit rule so far.
    pub throttled: Arc<AtomicU32>,
}

#[derive(Default)]
pub(crate) struct FakeState {
    pub(crate) incidents: Vec<Value>,
    failures: VecDeque<ResponseTemplate>,
    /// A rate limit rule: beyond it, 429 (`fake_limit`).
    limit: Option<Bucket>,
    /// Carry out the next request, then answer it this late (a lost answer).
    late: Option<Duration>,
    /// How long a new issue stays out of search results (Jira's index).
    pub(crate) index_lag: Duration,
    /// Change queries answered so far.
    pub(crate) change_pages: usize,
    /// A record to update right after a change page is answered.
    pub(crate) touch: Option<Touch>,
    /// The rows touched so far, as the page showed them.
    pub(crate) touched: Vec<Value>,
}

impl Fake {
    pub async fn serve(vendor: Vendor) -> (MockServer, Fake) {
        let server = MockServer::start().await;
        let fake = Fake {
            vendor,
            state: Arc::default(),
            down: Arc::default(),
            throttled: Arc::default(),
        };
        fake.mount(&server).await;
        (server, fake)
    }

    /// Answers on `server` (one whose other mocks do not match first).
    pub async fn mount(&self, server: &MockServer) {
        Mock::given(any())
            .respond_with(self.clone())
            .mount(server)
            .await;
    }

    pub fn new(vendor: Vendor) -> Fake {
        Fake {
            vendor,
            state: Arc::default(),
            down: Arc::default(),
            throttled: Arc::default(),
        }
    }

    /// While down, every request gets a 503 and nothing changes.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// At most `per_second` requests a second are answered, up to that many
    /// at once; 0 for no limit.
    pub fn set_rate_limit(&self, per_second: u32) {
        let limit = (per_second > 0).then(|| Bucket::new(per_second.into(), per_second.into()));
        self.state.lock().unwrap().limit = limit;
    }

    /// A token bucket: `per_second` requests a second, `burst` at once.
    pub fn set_token_bucket(&self, per_second: f64, burst: f64) {
        self.state.lock().unwrap().limit = Some(Bucket::new(per_second, burst));
    }

    /// Every incident kept, as the ITSM shows it.
    pub fn incidents(&self) -> Vec<Value> {
        self.state.lock().unwrap().incidents.clone()
    }

    /// A person sets incident `number` to `status` (ServiceNow's state
    /// code, BMC's Status) at `at` (Unix seconds).
    pub fn person(&self, number: &str, status: &str, by: &str, at: i64) {
        let mut state = self.state.lock().unwrap();
        if self.vendor == Vendor::ServiceNow
            && let Some(i) = state.incidents.iter().position(|i| i["number"] == number)
        {
            state.incidents[i]["state"] = json!(status);
            state.incidents[i]["sys_updated_on"] = json!(sn_time(at));
            state.incidents[i]["sys_updated_by"] = json!(by);
            cascade(&mut state.incidents, i, by, at);
            return;
        }
        for i in state.incidents.iter_mut() {
            match self.vendor {
                Vendor::ServiceNow if i["number"] == number => {
                    i["state"] = json!(status);
                    i["sys_updated_on"] = json!(sn_time(at));
                    i["sys_updated_by"] = json!(by);
                }
                Vendor::Bmc if i["values"]["Incident Number"] == number => {
                    i["values"]["Status"] = json!(status);
                    i["values"]["Last Modified Date"] = json!(ar_time(at));
                    i["values"]["Last Modified By"] = json!(by);
                }
                Vendor::Jira if i["key"] == number => {
                    crate::fake_jira::set_status(i, status, at);
                }
                _ => {}
            }
        }
    }

    /// Changes the incidents kept as `f` says (an ITSM answering oddly).
    pub fn edit(&self, f: impl FnOnce(&mut Vec<Value>)) {
        f(&mut self.state.lock().unwrap().incidents);
    }

    /// New issues stay out of search results this long (Jira).
    pub fn index_lag(&self, lag: Duration) {
        self.state.lock().unwrap().index_lag = lag;
    }

    /// The next request takes effect, but its answer comes after `delay`.
    pub fn answer_next_late(&self, delay: Duration) {
        self.state.lock().unwrap().late = Some(delay);
    }

    /// Right after answering change page `page` (1 for the first), the
    /// record at `index` of that page is updated: a person editing it
    /// while a sync round pages.
    pub fn touch_after_page(&self, page: usize, index: usize) {
        self.state.lock().unwrap().touch = Some(Touch { page, index });
    }

    /// The rows `touch_after_page` updated, as their page showed them.
    pub fn touched(&self) -> Vec<Value> {
        self.state.lock().unwrap().touched.clone()
    }

    /// Change queries answered so far.
    pub fn change_pages(&self) -> usize {
        self.state.lock().unwrap().change_pages
    }

    pub fn fail_next(&self, answer: ResponseTemplate) {
        self.state.lock().unwrap().failures.push_back(answer);
    }
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if self.down.load(Ordering::SeqCst) {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable");
        }
        let mut state = self.state.lock().unwrap();
        if let Some(refused) = state.limit.as_mut().and_then(Bucket::refuse) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return refused;
        }
        let answer = match self.vendor {
            Vendor::ServiceNow => servicenow(&mut state, req),
            Vendor::Bmc => bmc(&mut state, req),
            Vendor::Jira => {
                if let Some(refused) = crate::fake_jira::unauthorized(req) {
                    return refused;
                }
                if let Some(failure) = state.failures.pop_front() {
                    return failure;
                }
                crate::fake_jira::jira(&mut state, req)
            }
        };
        match state.late.take() {
            Some(delay) => answer.set_delay(delay),
            None => answer,
        }
    }
}

pub(crate) fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn body(req: &Request) -> Value {
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
            let sent = body(req);
            let mut incident = json!({"sys_id": format!("{n:032x}"), "number": format!("INC{n:07}"),
                "correlation_id": sent["correlation_id"], "state": "1",
                "short_description": sent["short_description"],
                "impact": sent["impact"], "urgency": sent["urgency"],
                "sys_updated_on": sn_time(crate::helpers::now()), "sys_updated_by": SN_USER});
            // A reference field sent by display value (the bridge sets
            // sysparm_input_display_value): the incident's number. One
            // that names no incident is left empty, as ServiceNow does.
            if let Some(parent) = sent["parent_incident"].as_str() {
                let display = query(req, "sysparm_input_display_value").as_deref() == Some("true");
                let found = state.incidents.iter().find(|i| {
                    if display {
                        i["number"] == parent
                    } else {
                        i["sys_id"] == parent
                    }
                });
                incident["parent_incident"] = found.map_or(json!(""), |i| i["sys_id"].clone());
            }
            state.incidents.push(incident.clone());
            ResponseTemplate::new(201).set_body_json(json!({"result": incident}))
        }
        ("GET", None)
            if query(req, "sysparm_query")
                .is_some_and(|q| q.starts_with("correlation_idSTARTSWITH")) =>
        {
            crate::fake_changes::servicenow(state, req)
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
                        // Work notes are a journal: each PATCH adds an entry.
                        if k == "work_notes" {
                            let journal = &mut state.incidents[i]["journal"];
                            match journal.as_array_mut() {
                                Some(entries) => entries.push(v.clone()),
                                None => *journal = json!([v.clone()]),
                            }
                        }
                        state.incidents[i][k] = v;
                    }
                }
                state.incidents[i]["sys_updated_on"] = json!(sn_time(crate::helpers::now()));
                state.incidents[i]["sys_updated_by"] = json!(SN_USER);
                cascade(&mut state.incidents, i, SN_USER, crate::helpers::now());
                ResponseTemplate::new(200).set_body_json(json!({"result": state.incidents[i]}))
            }
        },
        _ => error(400, "Invalid request", path),
    }
}

/// ServiceNow's parent-child synchronisation ("Synchronization between a
/// parent and a child incident"): a parent set to Resolved resolves its
/// active children, copying the close code and notes into them; In
/// Progress sets them In Progress; Closed does not close them.
fn cascade(incidents: &mut [Value], parent: usize, by: &str, at: i64) {
    let (sys_id, state) = (
        incidents[parent]["sys_id"].clone(),
        incidents[parent]["state"].clone(),
    );
    if state != "6" && state != "2" {
        return;
    }
    let (code, notes) = (
        incidents[parent]["close_code"].clone(),
        incidents[parent]["close_notes"].clone(),
    );
    for child in incidents.iter_mut() {
        let active = !matches!(child["state"].as_str(), Some("6" | "7" | "8"));
        if child["parent_incident"] != sys_id || !active || child["state"] == state {
            continue;
        }
        child["state"] = state.clone();
        if state == "6" {
            child["close_code"] = code.clone();
            child["close_notes"] = notes.clone();
        }
        child["sys_updated_on"] = json!(sn_time(at));
        child["sys_updated_by"] = json!(by);
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
            values["Last Modified Date"] = json!(ar_time(crate::helpers::now()));
            values["Last Modified By"] = json!(BMC_USER);
            state.incidents.push(json!({"values": values}));
            ResponseTemplate::new(201).set_body_json(json!({"values": {"Incident Number": number}}))
        }
        ("GET", "/api/arsys/v1/entry/HPD:IncidentInterface")
            if query(req, "q").is_some_and(|q| q.contains(" LIKE ")) =>
        {
            crate::fake_changes::bmc(state, req)
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
            state.incidents[i]["values"]["Last Modified Date"] =
                json!(ar_time(crate::helpers::now()));
            state.incidents[i]["values"]["Last Modified By"] = json!(BMC_USER);
            ResponseTemplate::new(204)
        }
        ("POST", "/api/arsys/v1/entry/HPD:WorkLog") => {
            let number = body(req)["values"]["Incident Number"]
                .as_str()
                .unwrap_or("")
                .to_string();
            match find(&state.incidents, "Incident Number", &number) {
                Some(i) => {
                    // Kept as the incident's journal, for tests that count entries.
                    let text = body(req)["values"]["Detailed Description"].clone();
                    let journal = &mut state.incidents[i]["journal"];
                    match journal.as_array_mut() {
                        Some(entries) => entries.push(text),
                        None => *journal = json!([text]),
                    }
                    ResponseTemplate::new(201)
                }
                None => error(400, "The incident does not exist", 1291053),
            }
        }
        _ => error(400, "Invalid request", 0),
    }
}
