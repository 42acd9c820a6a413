//! An SQS event: the worker role's handling of that batch, through the
//! same code as the Lambda's worker (`inbound::worker`, the domain's
//! `delivery` batch), message by message so that each shows its own ITSM
//! requests; then the partial batch response the Lambda would answer.
//! There is no queue here: what the Lambda would do on SQS (set a retry's
//! visibility, send a park to the dead-letter queue) is reported, not done.

use std::io::Write;
use std::path::Path;

use aws_lambda_events::event::sqs::SqsEvent;
use itsm_bridge::domain::delivery::Fate;
use itsm_bridge::inbound::worker;
use serde_json::{Value, json};

use super::{Halt, Run, Tally};

/// Runs the batch; prints each message's fate and the batch's answer.
pub async fn batch(
    run: &Run<'_>,
    file: &Path,
    event: &SqsEvent,
    tally: &mut Tally,
    out: &mut impl Write,
) -> Result<(), Halt> {
    let Some(delivery) = &run.app.delivery else {
        return Err(Halt::Error(format!(
            "{}: an SQS event needs a delivery queue: the embedded store's outbox, or DELIVERY_QUEUE_URL",
            file.display()
        )));
    };
    let policy = run.app.delivery_config.worker_policy();
    let mut batch = delivery.batch(&policy, false).await;
    let mut fates = Vec::with_capacity(event.records.len());
    for message in &event.records {
        let item = worker::received(message);
        let fate = batch.next(&item).await;
        let requests = run.log.take();
        let (alert_id, seq) = item.as_ref().map_or((Value::Null, Value::Null), |m| {
            (json!(m.alert.alert_id), json!(m.seq))
        });
        let (what, outcome, incident, reason) = describe(&fate);
        tally.count(outcome.unwrap_or(what), !fate.done() || what == "parked");
        let id = message.message_id.as_deref().unwrap_or("");
        if run.style.json {
            let line = json!({
                "event": file.display().to_string(),
                "message_id": id,
                "alert_id": alert_id,
                "seq": seq,
                "fate": what,
                "outcome": outcome,
                "incident": incident,
                "reason": reason,
                "itsm_requests": requests,
            });
            writeln!(out, "{line}")?;
        } else {
            let detail = match (outcome, &reason) {
                (Some(o), _) => format!(
                    " {o}{}",
                    incident["number"]
                        .as_str()
                        .map_or(String::new(), |n| format!(" incident {n}"))
                ),
                (None, Some(why)) => format!(": {why}"),
                (None, None) => String::new(),
            };
            writeln!(
                out,
                "{}: message {id} ({}, notification {}): {what}{detail}",
                file.display(),
                alert_id.as_str().unwrap_or("?"),
                seq
            )?;
            super::webhook::print_requests(out, &requests)?;
        }
        fates.push(fate);
    }
    batch.finish().await;
    let answer = worker::batch_response(event.records.iter().zip(&fates));
    let answer = serde_json::to_value(&answer).expect("JSON");
    if run.style.json {
        let mut line = json!({"event": file.display().to_string()});
        line["batchItemFailures"] = answer["batchItemFailures"].clone();
        writeln!(out, "{line}")?;
    } else {
        let back: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["itemIdentifier"].as_str())
            .collect();
        writeln!(
            out,
            "{}: the worker answers batchItemFailures [{}]{}",
            file.display(),
            back.join(", "),
            if back.is_empty() {
                " (every message leaves the queue)"
            } else {
                " (these go back to the queue)"
            }
        )?;
    }
    Ok(())
}

/// The fate's name, the outcome and incident when delivered, the reason when not.
fn describe(fate: &Fate) -> (&'static str, Option<&'static str>, Value, Option<String>) {
    match fate {
        Fate::Delivered(p) => (
            "delivered",
            Some(p.outcome.as_str()),
            json!(p.incident),
            None,
        ),
        Fate::AlreadyDelivered => ("already_delivered", None, Value::Null, None),
        Fate::Parked(why) => ("parked", None, Value::Null, Some(why.clone())),
        Fate::Retry { after, why } => (
            "retry",
            None,
            Value::Null,
            Some(format!("{why} (back in {}s)", after.as_secs())),
        ),
        Fate::Skipped => (
            "skipped",
            None,
            Value::Null,
            Some("an earlier notification of its alert was not delivered".into()),
        ),
    }
}
