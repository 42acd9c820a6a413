//! The worker role: Lambda's SQS event source hands it batches from the
//! delivery queue; each queued notification goes through the same state
//! machine as the webhook's. Partial batch responses name what failed, so
//! only that comes back; once a message of an alert fails, the alert's later
//! messages in the batch are reported failed too, unprocessed, so that
//! per-alert order holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};

use super::App;
use super::QueueHandle;
use super::common_schema;
use crate::adapters::queue::Message;
use crate::domain::alert::Alert;
use crate::domain::outcome::{ProcessError, Processed};
use crate::domain::ports::ItsmError;

/// Receives a notification waits for its alert's earlier one before it is
/// delivered anyway. SQS FIFO hands a group over in order, so this is for
/// the rare predecessor that never reached the queue.
const ORDER_PATIENCE: u32 = 10;

/// Serves SQS batches with `app` until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { Ok::<_, lambda_runtime::Error>(handle(&app, event.payload).await) }
    }))
    .await
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Delivered(Processed),
    /// Refused by the ITSM past the bounded attempts: parked in the
    /// dead-letter queue with the reason (the original may be deleted).
    Parked(String),
    /// Not delivered now: it comes back after `after`.
    Retry {
        after: Duration,
        why: String,
    },
    /// An earlier message of its alert failed in this batch: left for later.
    Skipped,
}

/// Handles one batch; never fails as a whole, so a bad message cannot take
/// the rest of the batch back to the queue with it.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (message, fate) in deliver_batch(app, &event.records).await {
        if !matches!(fate, Fate::Delivered(_) | Fate::Parked(_)) {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}

/// Delivers a batch in order, message by message; what became of each.
pub async fn deliver_batch<'a>(
    app: &App,
    messages: &'a [SqsMessage],
) -> Vec<(&'a SqsMessage, Fate)> {
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut fates = Vec::with_capacity(messages.len());
    for message in messages {
        let group = message
            .attributes
            .get("MessageGroupId")
            .map_or("", String::as_str);
        let fate = if failed_groups.contains(group) {
            // Back in the queue at once: SQS FIFO hands none of the group
            // over while its failed predecessor is in flight, so it comes
            // back right after it, not after the queue's visibility timeout.
            retry_later(app, message, Duration::ZERO).await;
            Fate::Skipped
        } else {
            deliver(app, message).await
        };
        if let Fate::Retry { after, why } = &fate {
            failed_groups.insert(group);
            tracing::warn!(message_id = message.message_id.as_deref().unwrap_or(""), retry_in_secs = after.as_secs(), reason = %why, "queued notification not delivered; it comes back later");
            retry_later(app, message, *after).await;
        }
        fates.push((message, fate));
    }
    fates
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

async fn deliver(app: &App, message: &SqsMessage) -> Fate {
    let receives: u32 = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let body = message.body.as_deref().unwrap_or("");
    let (m, alert) = match decode(body) {
        Ok(ok) => ok,
        // Not something this bridge queued: no retry can help.
        Err(why) => return park(app, message, body, "", &why).await,
    };
    let Some(delivery) = &app.delivery else {
        return Fate::Retry {
            after: app.delivery_config.backoff(receives, None),
            why: "no delivery queue is configured in this function".into(),
        };
    };
    // Wait for an earlier notification of the alert for a few receives; past
    // that it may never come (its queuing was lost), and order yields.
    let in_order = receives < ORDER_PATIENCE;
    match delivery.deliver(&alert, m.seq, in_order).await {
        Ok(processed) => {
            tracing::info!(alert_id = ?alert.alert_id, seq = m.seq, outcome = processed.outcome.as_str(), incident = ?processed.incident.as_ref().map_or("", |i| i.number.as_str()), itsm_calls = processed.itsm_calls, receives, "queued notification delivered");
            Fate::Delivered(processed)
        }
        Err(ProcessError::Itsm(e @ ItsmError::Rejected { .. }))
            if receives >= app.delivery_config.permanent_attempts =>
        {
            park(app, message, body, &m.group, &e.to_string()).await
        }
        Err(e) => {
            let retry_after = match &e {
                ProcessError::Itsm(ItsmError::Throttled { retry_after, .. }) => *retry_after,
                _ => None,
            };
            Fate::Retry {
                after: app.delivery_config.backoff(receives, retry_after),
                why: e.to_string(),
            }
        }
    }
}

async fn park(app: &App, message: &SqsMessage, body: &str, group: &str, why: &str) -> Fate {
    let QueueHandle::Sqs(sqs) = &app.queue else {
        return Fate::Retry {
            after: Duration::from_secs(app.delivery_config.backoff_max_secs),
            why: why.to_string(),
        };
    };
    let group = if group.is_empty() {
        message
            .attributes
            .get("MessageGroupId")
            .map_or("unknown", String::as_str)
    } else {
        group
    };
    let dedup = message.message_id.as_deref().unwrap_or(group);
    match sqs.park(body, group, dedup, why).await {
        Ok(()) => {
            tracing::error!(message_id = message.message_id.as_deref().unwrap_or(""), reason = %why, "queued notification parked in the dead-letter queue; fix the cause, then redrive it");
            if let Some(namespace) = &app.metrics {
                println!("{}", super::http::metrics::parked(namespace));
            }
            Fate::Parked(why.to_string())
        }
        // The receive count takes it to the dead-letter queue in the end.
        Err(e) => Fate::Retry {
            after: Duration::from_secs(app.delivery_config.backoff_max_secs),
            why: format!("{why}; and parking failed: {e}"),
        },
    }
}
