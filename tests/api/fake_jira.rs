//! A fake Jira, Cloud (REST API v3) or Data Center (v2, by the path), as
//! strict as the real ones where the bridge could go wrong: on Cloud ADF required for rich text, labels without
//! spaces, transitions valid only from the issue's current status, the
//! resolution required on the done transition and refused where its screen
//! lacks it, the removed `/search`, JQL by label, `errorMessages`/`errors`;
//! on Data Center rich text as strings and `/search` paged by `startAt`.

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fakes::{FakeState, body};
use crate::helpers::{JIRA_EMAIL, JIRA_PAT, JIRA_TOKEN};

const PRIORITIES: [&str; 5] = ["Highest", "High", "Medium", "Low", "Lowest"];

fn error(status: u16, messages: &[&str], errors: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"errorMessages": messages, "errors": errors}))
}

fn field_error(field: &str, message: &str) -> ResponseTemplate {
    error(400, &[], json!({ field: message }))
}

pub fn time_text(unix: i64) -> String {
    crate::fake_changes::ar_time(unix)
}

/// The workflow: Open (new) → In Progress (indeterminate) → Resolved (done) → Open.
fn status(name: &str) -> Value {
    let category = match name {
        "In Progress" => "indeterminate",
        "Resolved" | "Closed" | "Done" => "done",
        _ => "new",
    };
    json!({"name": name, "statusCategory": {"key": category}})
}

/// (id, name, from statuses, to status, resolution on its screen)
const TRANSITIONS: [(&str, &str, &[&str], &str, bool); 3] = [
    ("11", "Start work", &["Open"], "In Progress", false),
    ("21", "Resolve", &["Open", "In Progress"], "Resolved", true),
    ("31", "Reopen", &["Resolved", "Closed"], "Open", false),
];

pub fn set_status(issue: &mut Value, name: &str, at: i64) {
    issue["fields"]["status"] = status(name);
    issue["fields"]["updated"] = json!(time_text(at));
}

/// Basic (email and API token) or Bearer (a Data Center PAT).
pub fn unauthorized(req: &Request) -> Option<ResponseTemplate> {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{JIRA_EMAIL}:{JIRA_TOKEN}"));
    let given = req
        .headers
        .get("authorization")
        .map(|v| v.as_bytes().to_vec());
    let ok = given.as_deref() == Some(format!("Basic {basic}").as_bytes())
        || given.as_deref() == Some(format!("Bearer {JIRA_PAT}").as_bytes());
    (!ok).then(|| {
        ResponseTemplate::new(401)
            .set_body_string("Client must be authenticated to access this resource.")
    })
}

/// What Jira checks of an ADF document: a `doc` of version 1 whose text
/// nodes hold non-empty strings.
fn is_adf(v: &Value) -> bool {
    fn node_ok(n: &Value) -> bool {
        match n["type"].as_str() {
            Some("text") => n["text"].as_str().is_some_and(|t| !t.is_empty()),
            Some(_) => n
                .get("content")
                .is_none_or(|c| c.as_array().is_some_and(|c| c.iter().all(node_ok))),
            None => false,
        }
    }
    v["type"] == "doc"
        && v["version"] == 1
        && v["content"]
            .as_array()
            .is_some_and(|c| c.iter().all(node_ok))
}

/// Rich text as the version wants it: ADF on v3, a string on v2.
fn rich_ok(v: &Value, v2: bool) -> bool {
    if v2 { v.is_string() } else { is_adf(v) }
}

fn not_found() -> ResponseTemplate {
    error(
        404,
        &["Issue does not exist or you do not have permission to see it."],
        json!({}),
    )
}

pub fn jira(state: &mut FakeState, req: &Request) -> ResponseTemplate {
    let path = req.url.path().to_string();
    let now = crate::helpers::now();
    let (v2, path) = match (
        path.strip_prefix("/rest/api/2"),
        path.strip_prefix("/rest/api/3"),
    ) {
        (Some(rest), _) => (true, rest.to_string()),
        (_, Some(rest)) => (false, rest.to_string()),
        _ => return error(404, &["Not found"], json!({})),
    };
    match (req.method.as_str(), path.as_str()) {
        ("POST", "/issue") => create(state, &body(req), now, v2),
        ("GET", "/search/jql") if !v2 => crate::fake_changes::jira(state, req, false),
        ("GET", "/search") if v2 => crate::fake_changes::jira(state, req, true),
        ("GET", "/search") | ("POST", "/search") => error(
            410,
            &[
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.",
            ],
            json!({}),
        ),
        (method, p) if p.starts_with("/issue/") => {
            let rest = &p["/issue/".len()..];
            let (key, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(i) = state
                .incidents
                .iter()
                .position(|x| x["key"] == key || x["id"] == key)
            else {
                return not_found();
            };
            match (method, tail) {
                ("GET", "") => ResponseTemplate::new(200).set_body_json(&state.incidents[i]),
                ("GET", "transitions") => {
                    let current = state.incidents[i]["fields"]["status"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let offered: Vec<Value> = TRANSITIONS
                        .iter()
                        .filter(|t| t.2.contains(&current.as_str()))
                        .map(|(id, name, _, to, resolution)| {
                            let mut fields = json!({});
                            if *resolution {
                                fields["resolution"] = json!({"required": true, "name": "Resolution",
                                    "allowedValues": [{"name": "Done"}, {"name": "Won't Do"}]});
                            }
                            json!({"id": id, "name": name, "to": status(to), "fields": fields})
                        })
                        .collect();
                    ResponseTemplate::new(200).set_body_json(json!({"transitions": offered}))
                }
                ("POST", "transitions") => transition(&mut state.incidents[i], &body(req), now, v2),
                // Edit issue: 204; a field not on the edit screen is refused.
                ("PUT", "") => {
                    let b = body(req);
                    let Some(fields) = b["fields"].as_object() else {
                        return error(400, &["No fields to edit"], json!({}));
                    };
                    for (name, value) in fields {
                        if !["priority", "summary", "labels"].contains(&name.as_str()) {
                            return field_error(
                                name,
                                &format!(
                                    "Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                                ),
                            );
                        }
                        state.incidents[i]["fields"][name] = value.clone();
                    }
                    ResponseTemplate::new(204)
                }
                ("POST", "comment") => {
                    let b = body(req);
                    if !rich_ok(&b["body"], v2) {
                        return field_error("comment", "Comment body is not valid!");
                    }
                    state.incidents[i]["comments"]
                        .as_array_mut()
                        .unwrap()
                        .push(b["body"].clone());
                    ResponseTemplate::new(201).set_body_json(json!({"id": "1"}))
                }
                _ => error(405, &["Method not allowed"], json!({})),
            }
        }
        _ => error(404, &["Not found"], json!({})),
    }
}

fn create(state: &mut FakeState, b: &Value, now: i64, v2: bool) -> ResponseTemplate {
    let f = &b["fields"];
    if f["project"]["key"] != "OPS" {
        return field_error("project", "valid project is required");
    }
    if f["issuetype"]["name"] != "Incident" {
        return field_error("issuetype", "Specify a valid issue type");
    }
    let summary = f["summary"].as_str().unwrap_or("");
    if summary.is_empty() || summary.chars().count() > 255 {
        return field_error("summary", "You must specify a summary of the issue.");
    }
    if summary.contains('\n') {
        return field_error(
            "summary",
            "The summary is invalid because it contains newline characters.",
        );
    }
    if !rich_ok(&f["description"], v2) {
        let why = if v2 {
            "Operation value must be a string"
        } else {
            "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        };
        return field_error("description", why);
    }
    let labels = f["labels"].as_array().cloned().unwrap_or_default();
    if let Some(bad) = labels
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains(' '))
    {
        return field_error(
            "labels",
            &format!("The label '{bad}' contains spaces which is invalid."),
        );
    }
    if let Some(p) = f.get("priority")
        && !PRIORITIES.contains(&p["name"].as_str().unwrap_or(""))
    {
        return field_error("priority", "Priority name is not valid");
    }
    let n = state.incidents.len() + 1;
    let (id, key) = (format!("{}", 10_000 + n), format!("OPS-{n}"));
    let indexed = now_ms() + state.index_lag.as_millis() as u64;
    state.incidents.push(
        json!({"id": id, "key": key, "indexed_at_ms": indexed, "fields": {
        "summary": summary, "description": f["description"], "labels": labels,
        "priority": f["priority"], "status": status("Open"), "updated": time_text(now),
        "resolution": null}, "comments": []}),
    );
    ResponseTemplate::new(201).set_body_json(json!({"id": id, "key": key,
        "self": format!("https://example.atlassian.net/rest/api/3/issue/{id}")}))
}

fn transition(issue: &mut Value, b: &Value, now: i64, v2: bool) -> ResponseTemplate {
    let current = issue["fields"]["status"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let id = b["transition"]["id"].as_str().unwrap_or("");
    let Some((_, _, _, to, resolution)) = TRANSITIONS
        .iter()
        .find(|t| t.0 == id && t.2.contains(&current.as_str()))
    else {
        return error(
            400,
            &[&format!(
                "Transition id '{id}' is not valid for this issue."
            )],
            json!({}),
        );
    };
    let given = b["fields"].get("resolution");
    match (resolution, given) {
        (true, None) => return field_error("resolution", "Resolution is required."),
        (false, Some(_)) => {
            return field_error(
                "resolution",
                "Field 'resolution' cannot be set. It is not on the appropriate screen, or unknown.",
            );
        }
        _ => {}
    }
    if let Some(comments) = b["update"]["comment"].as_array() {
        for c in comments {
            if !rich_ok(&c["add"]["body"], v2) {
                return field_error("comment", "Comment body is not valid!");
            }
            issue["comments"]
                .as_array_mut()
                .unwrap()
                .push(c["add"]["body"].clone());
        }
    }
    set_status(issue, to, now);
    issue["fields"]["resolution"] = given.cloned().unwrap_or(Value::Null);
    ResponseTemplate::new(204)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
