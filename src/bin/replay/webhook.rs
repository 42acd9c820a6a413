//! One alert through the webhook's handler, as the function URL would
//! deliver it, and what replay says about the answer.

use std::io::Write;
use std::path::Path;

use itsm_bridge::adapters::wire::ItsmRequest;
use itsm_bridge::inbound::http;
use serde_json::{Value, json};

use super::{Halt, Run, Tally, explain};

/// How replay prints.
#[derive(Clone, Copy)]
pub struct Style {
    pub json: bool,
    pub colour: bool,
    pub explain: bool,
}

/// Posts `event` to the webhook; prints the answer and counts it.
pub async fn post(
    run: &Run<'_>,
    file: &Path,
    event: &Value,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<(), Halt> {
    let (app, style) = (run.app, run.style);
    let request = lambda_http::request::from_str(&event.to_string())
        .map_err(|e| format!("{}: not a function URL event: {e}", file.display()))?;
    // Before it is processed: which group it would open or join.
    let explained = if style.explain {
        explain::explain(app, run.config, event).await
    } else {
        Value::Null
    };
    let response = http::handle(app, request).await;
    let status = response.status().as_u16();
    let body: Value = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let requests = run.log.take();
    let outcome = body
        .get("outcome")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    // A refusal queued (a 4xx: configuration to fix) fails the run: it
    // will not go through until someone acts.
    let refused = body.pointer("/queue/failure/refused") == Some(&Value::Bool(true));
    tally.count(outcome, status >= 400 || refused);
    if style.json {
        let mut line = summary(file, status, &body, &requests);
        if style.explain {
            line["explain"] = explained;
        }
        writeln!(out, "{line}")?;
    } else {
        print_human(out, file, status, &body, &requests, style.colour)?;
        if style.explain {
            writeln!(
                out,
                "  explain: {}",
                serde_json::to_string_pretty(&explained)
                    .expect("JSON")
                    .replace('\n', "\n  ")
            )?;
        }
    }
    Ok(())
}

fn summary(file: &Path, status: u16, body: &Value, requests: &[ItsmRequest]) -> Value {
    json!({
        "event": file.display().to_string(),
        "status": status,
        "outcome": body.get("outcome").or_else(|| body.get("error")).cloned().unwrap_or(Value::Null),
        "alert_id": body.get("alert_id").cloned().unwrap_or(Value::Null),
        "incident": body.get("incident").cloned().unwrap_or(Value::Null),
        "message": body.get("message").cloned().unwrap_or(Value::Null),
        "queue": body.get("queue").cloned().unwrap_or(Value::Null),
        "itsm_requests": requests,
    })
}

fn print_human(
    out: &mut impl Write,
    file: &Path,
    status: u16,
    body: &Value,
    requests: &[ItsmRequest],
    colour: bool,
) -> std::io::Result<()> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let outcome = if status < 400 {
        text("outcome")
    } else {
        text("error")
    };
    let incident = body
        .pointer("/incident/number")
        .and_then(Value::as_str)
        .map_or(String::new(), |n| format!(" incident {n}"));
    let status_text = match (colour, status) {
        (false, _) => status.to_string(),
        (true, s) if s >= 500 => format!("\x1b[31m{s}\x1b[0m"),
        (true, s) if s >= 400 => format!("\x1b[33m{s}\x1b[0m"),
        (true, s) => format!("\x1b[32m{s}\x1b[0m"),
    };
    writeln!(out, "{}: {status_text} {outcome}{incident}", file.display())?;
    if let Some(reason) = body.pointer("/queue/reason").and_then(Value::as_str) {
        let failure = body.pointer("/queue/failure");
        let why = failure
            .and_then(|f| f["message"].as_str())
            .map_or(String::new(), |m| format!(": {m}"));
        writeln!(out, "  in the outbox ({reason}{why})")?;
        if failure.is_some_and(|f| f["refused"] == true) {
            writeln!(
                out,
                "  the ITSM refused it: configuration to fix (the credentials, the integration \
                 user's roles, a data policy or a required field, as its message says); fix it, \
                 then `replay --send --drain` delivers it"
            )?;
        } else {
            writeln!(
                out,
                "  `replay --send --drain` delivers it when the ITSM is back"
            )?;
        }
    }
    if status >= 400 {
        writeln!(out, "  {}", text("message"))?;
    }
    print_requests(out, requests)
}

/// The ITSM requests, each with its body.
pub fn print_requests(out: &mut impl Write, requests: &[ItsmRequest]) -> std::io::Result<()> {
    for r in requests {
        writeln!(out, "  {} {}", r.method, r.path)?;
        if let Some(b) = &r.body {
            for line in serde_json::to_string_pretty(b).expect("JSON").lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}
