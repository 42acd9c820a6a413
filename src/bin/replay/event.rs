//! What a FILE stands for, told by its shape as `cargo lambda invoke`
//! would hand it to the binary: the role that would receive it.

use std::path::Path;

use aws_lambda_events::event::sqs::SqsEvent;
use itsm_bridge::inbound::http;
use serde_json::{Value, json};

/// The shapes replay knows, for the error that names them.
pub const KNOWN: &str = "a function URL event (payload 2.0, with requestContext), a bare \
    common-schema alert body (schemaId, data), an SQS event (Records from aws:sqs) or an \
    EventBridge scheduled event (detail-type, source)";

/// One FILE, read and recognised.
pub enum Event {
    /// For the webhook: a function URL event carrying the token.
    Webhook(Value),
    /// For the worker: a batch from the delivery queue.
    Batch(SqsEvent),
    /// For the scheduled role: one round.
    Schedule,
}

impl Event {
    /// The Lambda event as `cargo lambda invoke --data-file` takes it.
    pub fn lambda_event(&self, raw: &Value) -> Value {
        match self {
            Event::Webhook(event) => event.clone(),
            Event::Batch(_) | Event::Schedule => raw.clone(),
        }
    }
}

/// Reads `file` and recognises it; the parsed JSON as it was, too.
///
/// # Errors
/// A sentence naming the file: unreadable, not JSON, or a shape replay
/// does not know.
pub fn read(file: &Path, token: &str) -> Result<(Event, Value), String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    let parsed: Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let event = recognise(&parsed, &text, token).map_err(|e| format!("{name}: {e}"))?;
    Ok((event, parsed))
}

fn recognise(parsed: &Value, text: &str, token: &str) -> Result<Event, String> {
    let has = |k: &str| parsed.get(k).is_some();
    if let Some(records) = parsed.get("Records").and_then(Value::as_array) {
        let sqs = records
            .iter()
            .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
        if !sqs || records.is_empty() {
            return Err(format!(
                "a Records event, but not from SQS (eventSource aws:sqs); replay takes {KNOWN}"
            ));
        }
        return serde_json::from_value(parsed.clone())
            .map(Event::Batch)
            .map_err(|e| format!("an SQS event replay cannot read: {e}"));
    }
    if has("detail-type") && has("source") {
        return Ok(Event::Schedule);
    }
    let mut event = if has("requestContext") {
        parsed.clone()
    } else if has("schemaId") || has("data") {
        http::event::function_url_event("POST", None, text)
    } else {
        return Err(format!("not an event replay knows; it takes {KNOWN}"));
    };
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    Ok(Event::Webhook(event))
}
