//! The worker role: Lambda's SQS event source hands it batches from the
//! delivery queue; the domain's rules (`domain::delivery::worker`) say what
//! becomes of each message, and this module carries that out on SQS:
//! partial batch responses name what stays, a retry sets the message's
//! visibility, a park sends it to the dead-letter queue with its reason.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};

use super::App;
use super::QueueHandle;
use super::common_schema;
use crate::adapters::queue::Message;
use crate::domain::alert::Alert;
pub use crate::domain::delivery::Fate;
use crate::domain::delivery::Received;

/// Serves SQS batches with `app` until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<_, lambda_runtime::Error>(handle(&app, event.payload).await) }
    }))
    .await
}

/// Handles one batch; never fails as a whole, so a bad message cannot take
/// the rest of the batch back to the queue with it.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let fates = deliver_batch(app, &event.records).await;
    batch_response(fates.iter().map(|(m, fate)| (*m, fate)))
}

/// The partial batch response for these fates: every message not done
/// (delivered, a copy, or parked) goes back to the queue.
pub fn batch_response<'a>(
    fates: impl IntoIterator<Item = (&'a SqsMessage, &'a Fate)>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (message, fate) in fates {
        if !fate.done() {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}

/// Delivers a batch in order, message by message; what became of each,
/// carried out on the queue.
pub async fn deliver_batch<'a>(
    app: &App,
    messages: &'a [SqsMessage],
) -> Vec<(&'a SqsMessage, Fate)> {
    let Some(delivery) = &app.delivery else {
        let why = "no delivery queue is configured in this function".to_string();
        let after = app.delivery_config.worker_policy().backoff(1, None);
        return messages
            .iter()
            .map(|m| {
                (
                    m,
                    Fate::Retry {
                        after,
                        why: why.clone(),
                    },
                )
            })
            .collect();
    };
    let received: Vec<Result<Received, String>> = messages.iter().map(received).collect();
    let policy = app.delivery_config.worker_policy();
    let fates = delivery.deliver_batch(&received, &policy).await;
    let mut out = Vec::with_capacity(messages.len());
    for ((message, item), fate) in messages.iter().zip(&received).zip(fates) {
        let fate = carry_out(app, message, item.as_ref().ok(), fate).await;
        out.push((message, fate));
    }
    out
}

/// A message as the domain's rules take it; `Err` for a body that is not a
/// notification this bridge queued.
///
/// # Errors
/// What is wrong with the body.
pub fn received(message: &SqsMessage) -> Result<Received, String> {
    let receives = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let (m, alert) = decode(message.body.as_deref().unwrap_or(""))?;
    Ok(Received {
        alert,
        seq: m.seq,
        group: m.group,
        receives,
    })
}

/// Does on SQS what `fate` says; a park that fails becomes a retry.
async fn carry_out(app: &App, message: &SqsMessage, item: Option<&Received>, fate: Fate) -> Fate {
    let id = message.message_id.as_deref().unwrap_or("");
    match &fate {
        Fate::Delivered(processed) => {
            tracing::info!(message_id = id, alert_id = ?item.map_or("", |m| m.alert.alert_id.as_str()), seq = item.map_or(0, |m| m.seq), outcome = processed.outcome.as_str(), incident = ?processed.incident.as_ref().map_or("", |i| i.number.as_str()), itsm_calls = processed.itsm_calls, receives = item.map_or(0, |m| m.receives), "queued notification delivered");
        }
        Fate::AlreadyDelivered => {
            tracing::info!(
                message_id = id,
                seq = item.map_or(0, |m| m.seq),
                "queued notification delivered before; deleted"
            );
        }
        Fate::Skipped => retry_later(app, message, Duration::ZERO).await,
        Fate::Retry { after, why } => {
            tracing::warn!(message_id = id, retry_in_secs = after.as_secs(), reason = %why, "queued notification not delivered; it comes back later");
            retry_later(app, message, *after).await;
        }
        Fate::Parked(why) => return park(app, message, item, why).await,
    }
    fate
}

/// Leaves `message` in the queue for `after` (FIFO queues have no
/// per-message delay: its visibility is the delay).
async fn retry_later(app: &App, message: &SqsMessage, after: Duration) {
    if let (QueueHandle::Sqs(sqs), Some(receipt)) = (&app.queue, &message.receipt_handle)
        && let Err(e) = sqs.retry_later(receipt, after).await
    {
        tracing::warn!(error = %e, "could not set the retry delay; the queue's visibility timeout applies");
    }
}

/// A queued notification and its alert, as the webhook queued them.
///
/// # Errors
/// What is wrong, when the text is not a notification this bridge queued.
pub fn decode(text: &str) -> Result<(Message, Alert), String> {
    let m = Message::decode(text)?;
    let alert = common_schema::parse(m.alert.get().as_bytes()).map_err(|e| e.to_string())?;
    Ok((m, alert))
}

async fn park(app: &App, message: &SqsMessage, item: Option<&Received>, why: &str) -> Fate {
    let backoff_max = Duration::from_secs(app.delivery_config.backoff_max_secs);
    let QueueHandle::Sqs(sqs) = &app.queue else {
        return Fate::Retry {
            after: backoff_max,
            why: why.to_string(),
        };
    };
    let group = item.map(|m| m.group.as_str()).unwrap_or_else(|| {
        message
            .attributes
            .get("MessageGroupId")
            .map_or("unknown", String::as_str)
    });
    let dedup = message.message_id.as_deref().unwrap_or(group);
    let body = message.body.as_deref().unwrap_or("");
    match sqs.park(body, group, dedup, why).await {
        Ok(()) => {
            tracing::error!(message_id = message.message_id.as_deref().unwrap_or(""), reason = %why, "queued notification parked in the dead-letter queue; fix the cause, then redrive it");
            if let Some(namespace) = &app.metrics {
                println!("{}", super::http::metrics::parked(namespace));
            }
            Fate::Parked(why.to_string())
        }
        // The message stays; its next receive tries it again.
        Err(e) => {
            retry_later(app, message, backoff_max).await;
            Fate::Retry {
                after: backoff_max,
                why: format!("{why}; and parking failed: {e}"),
            }
        }
    }
}
