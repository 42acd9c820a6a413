//! The delivery queue on SQS FIFO: the message group is the alert (its
//! correlation key), so each alert's notifications are delivered in order
//! while alerts go in parallel; the deduplication id derives from the
//! notification and its number, so a queuing sent twice collapses.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::Message;
use crate::domain::ports::{DeliveryQueue, QueueError, QueuedNotification};

pub struct SqsQueue {
    client: Client,
    url: String,
    dead_letter_url: Option<String>,
}

fn failed(op: &str, e: impl std::error::Error) -> QueueError {
    let detail = DisplayErrorContext(&e).to_string();
    tracing::debug!(error = %detail, "SQS {op} failed");
    // The SDK's error is long; the first clause says what happened.
    let short: String = detail.chars().take(200).collect();
    QueueError(format!("SQS {op}: {short}"))
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            dead_letter_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Leaves a received message in the queue for `after` before it comes
    /// back: FIFO queues have no per-message delay, so a failed delivery
    /// backs off through its visibility.
    ///
    /// # Errors
    /// When SQS refused; the message then comes back after the queue's
    /// visibility timeout instead.
    pub async fn retry_later(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(after.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| failed("ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Parks a message the ITSM keeps refusing in the dead-letter queue,
    /// with the reason; the caller then lets the original be deleted.
    ///
    /// # Errors
    /// When no dead-letter queue is configured or SQS refused: the message
    /// stays and reaches the dead-letter queue through its receive count.
    pub async fn park(
        &self,
        message: &str,
        group: &str,
        dedup: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dlq = self
            .dead_letter_url
            .as_deref()
            .ok_or_else(|| QueueError("DEAD_LETTER_QUEUE_URL is not set".into()))?;
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason.chars().take(1000).collect::<String>())
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(dlq)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_body(message)
            .message_attributes("reason", reason)
            .send()
            .await
            .map_err(|e| failed("SendMessage (dead-letter queue)", e))?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueue for SqsQueue {
    async fn send(&self, n: &QueuedNotification<'_>) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_group_id(n.group)
            .message_deduplication_id(Message::dedup_id(n.group, n.seq, n.digest))
            .message_body(Message::encode(n)?)
            .send()
            .await
            .map_err(|e| failed("SendMessage", e))?;
        Ok(())
    }
}
