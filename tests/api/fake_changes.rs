//! The fakes' answers to the sync role's change queries (ServiceNow's Table
//! API, BMC's AR REST, Jira's search), strict about the semantics the
//! client may rely on: only the conditions each one understands (anything
//! else fails the test, where the real ITSM might ignore it silently), rows
//! sorted only by the fields asked for, ties in an order the client did not
//! ask for (newest record first), and offsets into the result as it stands
//! at each request. A test can have a record updated right after a page is
//! answered, as a person would between two page reads.

use std::cmp::Ordering;

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fakes::{FakeState, Vendor, query};

/// After answering change page `page` (1 for the first), the record at
/// `index` of that page is updated now: its update time moves past any
/// window a round could be reading.
#[derive(Debug, Clone, Copy)]
pub struct Touch {
    pub page: usize,
    pub index: usize,
}

/// One condition of a query.
type Filter = Box<dyn Fn(&Value) -> bool>;

/// One sort key of a query: a field, read by `key`, ascending or not.
type SortKey<'a> = (Box<dyn Fn(&Value) -> Key + 'a>, bool);

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Text(String),
}

/// Sorts `rows` by `keys` only; rows equal on all of them stay newest first.
fn sort(rows: &mut Vec<&Value>, keys: &[SortKey<'_>]) {
    rows.reverse();
    rows.sort_by(|a, b| {
        keys.iter()
            .map(|(key, asc)| {
                let o = key(a).cmp(&key(b));
                if *asc { o } else { o.reverse() }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
}

/// `limit` rows from `offset`, as the query parameters say.
fn page(mut rows: Vec<&Value>, req: &Request, limit: &str, offset: &str) -> Vec<Value> {
    let limit: usize = query(req, limit)
        .and_then(|l| l.parse().ok())
        .unwrap_or(10_000);
    let offset: usize = query(req, offset).and_then(|o| o.parse().ok()).unwrap_or(0);
    rows.drain(..offset.min(rows.len()));
    rows.truncate(limit);
    rows.into_iter().cloned().collect()
}

/// Counts the change page just answered and carries out the touch due after it.
fn answered(state: &mut FakeState, vendor: Vendor, rows: &[Value]) {
    state.change_pages += 1;
    let Some(touch) = state.touch.filter(|t| t.page == state.change_pages) else {
        return;
    };
    let Some(row) = rows.get(touch.index) else {
        panic!("page {} has no row {}", touch.page, touch.index);
    };
    let now = crate::helpers::now();
    let same = |i: &&mut Value| match vendor {
        Vendor::ServiceNow => i["sys_id"] == row["sys_id"],
        Vendor::Bmc => i["values"]["Request ID"] == row["values"]["Request ID"],
        Vendor::Jira => i["key"] == row["key"],
    };
    let incident = state.incidents.iter_mut().find(same).expect("touched row");
    match vendor {
        Vendor::ServiceNow => incident["sys_updated_on"] = json!(sn_time(now)),
        Vendor::Bmc => incident["values"]["Last Modified Date"] = json!(ar_time(now)),
        Vendor::Jira => incident["fields"]["updated"] = json!(ar_time(now)),
    }
    state.touched.push(row.clone());
}

/// The Table API's change query: `correlation_idSTARTSWITH…`, bounds and
/// order on `sys_updated_on` (UTC text), `sys_id>…`, `ORDERBY[DESC]…`, and
/// `sysparm_limit`/`sysparm_offset`.
pub fn servicenow(state: &mut FakeState, req: &Request) -> ResponseTemplate {
    let q = query(req, "sysparm_query").unwrap();
    let updated = |i: &Value| sn_unix(i["sys_updated_on"].as_str().unwrap());
    let mut filters: Vec<Filter> = Vec::new();
    let mut keys: Vec<SortKey<'_>> = Vec::new();
    for part in q.split('^') {
        let part = part.to_string();
        if let Some(p) = part.strip_prefix("correlation_idSTARTSWITH") {
            let p = p.to_string();
            filters.push(Box::new(move |i| {
                i["correlation_id"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&p))
            }));
        } else if let Some(t) = part.strip_prefix("sys_updated_on>=") {
            let t = sn_unix(t);
            filters.push(Box::new(move |i| updated(i) >= t));
        } else if let Some(t) = part.strip_prefix("sys_updated_on<") {
            let t = sn_unix(t);
            filters.push(Box::new(move |i| updated(i) < t));
        } else if let Some(id) = part.strip_prefix("sys_id>") {
            let id = id.to_string();
            filters.push(Box::new(move |i| {
                i["sys_id"].as_str().unwrap() > id.as_str()
            }));
        } else if let Some(field) = part.strip_prefix("ORDERBYDESC") {
            keys.push((sn_key(field), false));
        } else if let Some(field) = part.strip_prefix("ORDERBY") {
            keys.push((sn_key(field), true));
        } else {
            // ServiceNow would ignore it silently (or widen the query).
            panic!("unexpected condition {part:?} in {q:?}");
        }
    }
    let mut rows: Vec<&Value> = state
        .incidents
        .iter()
        .filter(|i| filters.iter().all(|f| f(i)))
        .collect();
    sort(&mut rows, &keys);
    let rows = page(rows, req, "sysparm_limit", "sysparm_offset");
    answered(state, Vendor::ServiceNow, &rows);
    ResponseTemplate::new(200).set_body_json(json!({"result": rows}))
}

fn sn_key(field: &str) -> Box<dyn Fn(&Value) -> Key> {
    match field {
        "sys_updated_on" => Box::new(|i| Key::Int(sn_unix(i["sys_updated_on"].as_str().unwrap()))),
        "sys_id" | "number" => {
            let field = field.to_string();
            Box::new(move |i| Key::Text(i[&field].as_str().unwrap().to_string()))
        }
        other => panic!("unexpected ORDERBY {other:?}"),
    }
}

/// The AR REST change query: a qualification of `'Field' OP value` terms
/// joined by AND (`LIKE "prefix%"`, `>=`, `<`, `>` on `Last Modified Date`
/// as Unix seconds or on a character field as text), `sort=Field.asc,…`,
/// `limit`, `offset`.
pub fn bmc(state: &mut FakeState, req: &Request) -> ResponseTemplate {
    let q = query(req, "q").unwrap();
    let mut filters: Vec<Filter> = Vec::new();
    for term in q.split(" AND ") {
        let (field, rest) = term
            .strip_prefix('\'')
            .and_then(|t| t.split_once("' "))
            .unwrap_or_else(|| panic!("unexpected term {term:?} in {q:?}"));
        let (op, value) = rest.split_once(' ').expect("an operator and a value");
        let field = field.to_string();
        let key = bmc_key(&field);
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(text) => Key::Text(text.to_string()),
            None => Key::Int(value.parse().expect("a number or a quoted string")),
        };
        filters.push(match (op, value) {
            ("LIKE", Key::Text(pattern)) => {
                let prefix = pattern
                    .strip_suffix('%')
                    .expect("a prefix pattern")
                    .to_string();
                Box::new(move |i| {
                    i["values"][&field]
                        .as_str()
                        .is_some_and(|v| v.starts_with(&prefix))
                })
            }
            (">=", v) => Box::new(move |i| key(i) >= v),
            ("<", v) => Box::new(move |i| key(i) < v),
            (">", v) => Box::new(move |i| key(i) > v),
            (op, _) => panic!("unexpected operator {op:?} in {q:?}"),
        });
    }
    let sort_param = query(req, "sort").unwrap_or_default();
    let keys: Vec<SortKey<'_>> = sort_param
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| match s.rsplit_once('.') {
            Some((field, "asc")) => (bmc_key(field), true),
            Some((field, "desc")) => (bmc_key(field), false),
            _ => panic!("unexpected sort {s:?}"),
        })
        .collect();
    let mut rows: Vec<&Value> = state
        .incidents
        .iter()
        .filter(|i| filters.iter().all(|f| f(i)))
        .collect();
    sort(&mut rows, &keys);
    let rows = page(rows, req, "limit", "offset");
    answered(state, Vendor::Bmc, &rows);
    ResponseTemplate::new(200).set_body_json(json!({"entries": rows, "_links": {}}))
}

fn bmc_key(field: &str) -> Box<dyn Fn(&Value) -> Key> {
    let field = field.to_string();
    if field == "Last Modified Date" {
        Box::new(move |i| Key::Int(ar_unix(&i["values"][&field])))
    } else {
        Box::new(move |i| Key::Text(i["values"][&field].as_str().unwrap_or("").to_string()))
    }
}

/// Jira's search: `labels = "L"`, then `AND` conditions on `updated`
/// (a number is milliseconds since the epoch; `"-Nm"` is N minutes before
/// Jira's now) and on `key` (compared as Jira does within one project: by
/// the issue's number), then `ORDER BY` fields. Paged by `startAt` (v2) or
/// by a `nextPageToken` that is an offset into the result as it stands.
pub fn jira(state: &mut FakeState, req: &Request, v2: bool) -> ResponseTemplate {
    let jql = query(req, "jql").unwrap_or_default();
    let (filter, order) = jql.split_once(" ORDER BY ").unwrap_or((&jql, ""));
    let mut terms = filter.split(" AND ");
    let Some(label) = terms
        .next()
        .and_then(|t| t.strip_prefix("labels = \""))
        .and_then(|t| t.strip_suffix('"'))
    else {
        return jira_error(&jql);
    };
    let updated = |i: &Value| ar_unix(&i["fields"]["updated"]) * 1000;
    let mut filters: Vec<Filter> = Vec::new();
    for term in terms {
        let mut words = term.splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (words.next(), words.next(), words.next())
        else {
            return jira_error(&jql);
        };
        let bound = match (
            field,
            value
                .strip_prefix("\"-")
                .and_then(|v| v.strip_suffix("m\"")),
        ) {
            ("updated", Some(minutes)) => {
                Key::Int((crate::helpers::now() - minutes.parse::<i64>().unwrap() * 60) * 1000)
            }
            ("updated", None) => Key::Int(value.parse().expect("milliseconds since the epoch")),
            ("key", _) => Key::Int(issue_number(value.trim_matches('"'))),
            _ => return jira_error(&jql),
        };
        let read: Box<dyn Fn(&Value) -> Key> = match field {
            "updated" => Box::new(move |i| Key::Int(updated(i))),
            _ => Box::new(|i| Key::Int(issue_number(i["key"].as_str().unwrap()))),
        };
        filters.push(match op {
            ">=" => Box::new(move |i| read(i) >= bound),
            "<" => Box::new(move |i| read(i) < bound),
            ">" => Box::new(move |i| read(i) > bound),
            _ => return jira_error(&jql),
        });
    }
    let keys: Vec<SortKey<'_>> = order
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (field, dir) = s.split_once(' ').unwrap_or((s, "ASC"));
            let key: Box<dyn Fn(&Value) -> Key> = match field {
                "updated" => Box::new(move |i| Key::Int(updated(i))),
                "key" | "created" => {
                    Box::new(|i| Key::Int(issue_number(i["key"].as_str().unwrap())))
                }
                other => panic!("unexpected ORDER BY {other:?}"),
            };
            (key, dir == "ASC")
        })
        .collect();
    let now_ms = crate::fake_jira::now_ms();
    let mut rows: Vec<&Value> = state
        .incidents
        .iter()
        .filter(|i| {
            i["fields"]["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l == label))
        })
        .filter(|i| filters.iter().all(|f| f(i)))
        .filter(|i| i["indexed_at_ms"].as_u64().is_none_or(|t| t <= now_ms))
        .collect();
    sort(&mut rows, &keys);
    let total = rows.len();
    let size: usize = query(req, "maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(50);
    let from: usize = query(req, if v2 { "startAt" } else { "nextPageToken" })
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let issues: Vec<Value> = rows
        .iter()
        .skip(from)
        .take(size)
        .map(|i| {
            json!({"id": i["id"], "key": i["key"], "fields": {
            "labels": i["fields"]["labels"], "status": i["fields"]["status"],
            "updated": i["fields"]["updated"]}})
        })
        .collect();
    if jql.contains("itsm-bridge") {
        answered(state, Vendor::Jira, &issues);
    }
    if v2 {
        return ResponseTemplate::new(200).set_body_json(
            json!({"startAt": from, "maxResults": size, "total": total, "issues": issues}),
        );
    }
    let last = from + size >= total;
    let mut answer = json!({"issues": issues, "isLast": last});
    if !last {
        answer["nextPageToken"] = json!((from + size).to_string());
    }
    ResponseTemplate::new(200).set_body_json(answer)
}

/// `OPS-12` → 12.
fn issue_number(key: &str) -> i64 {
    key.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not an issue key: {key:?}"))
}

fn jira_error(jql: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "errorMessages": [format!("Error in the JQL Query: {jql}")], "errors": {}}))
}

/// ServiceNow's `sys_updated_on`: UTC, `YYYY-MM-DD HH:MM:SS`.
pub fn sn_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .unwrap()
}

pub fn sn_unix(text: &str) -> i64 {
    time::PrimitiveDateTime::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap()
    .assume_utc()
    .unix_timestamp()
}

/// AR System's date answer: `2026-12-01T17:00:00.000+0000`.
pub fn ar_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].000+0000"
    ))
    .unwrap()
}

/// Unix seconds of an `ar_time` value.
pub fn ar_unix(v: &Value) -> i64 {
    itsm_bridge::adapters::wire::compact_offset_time(v.as_str().unwrap()).unwrap()
}
