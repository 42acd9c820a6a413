//! The worker's SQS event source mapping as the breaker's [`Intake`]: the
//! scheduled round disables it while the ITSM is down (Lambda stops
//! polling: no invocations, no receive counts spent, the messages wait in
//! the queue) and enables it once a probe finds the ITSM back. AWS's own
//! circuit-breaker pattern for SQS sources.

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::domain::ports::{Intake, IntakeError};

pub struct EventSourceIntake {
    client: Client,
    /// The mapping's UUID (`WORKER_EVENT_SOURCE_MAPPING`).
    uuid: String,
}

impl EventSourceIntake {
    pub fn new(client: Client, uuid: impl Into<String>) -> EventSourceIntake {
        EventSourceIntake {
            client,
            uuid: uuid.into(),
        }
    }

    async fn set(&self, enabled: bool) -> Result<(), IntakeError> {
        self.client
            .update_event_source_mapping()
            .uuid(&self.uuid)
            .enabled(enabled)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("UpdateEventSourceMapping", &self.uuid, e))
    }
}

fn failed<E, R>(op: &str, uuid: &str, e: SdkError<E, R>) -> IntakeError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    tracing::debug!(error = %DisplayErrorContext(&e), "Lambda {op} failed");
    let cause = match &e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("no message")
        ),
        _ => "the request failed (RUST_LOG=debug shows the SDK's error)".into(),
    };
    IntakeError(format!(
        "Lambda {op} of event source mapping {uuid}: {cause}"
    ))
}

#[async_trait]
impl Intake for EventSourceIntake {
    async fn paused(&self) -> Result<bool, IntakeError> {
        let out = self
            .client
            .get_event_source_mapping()
            .uuid(&self.uuid)
            .send()
            .await
            .map_err(|e| failed("GetEventSourceMapping", &self.uuid, e))?;
        // Enabling, Updating and Creating end enabled; Disabling, Disabled.
        Ok(matches!(out.state(), Some("Disabled" | "Disabling")))
    }

    async fn pause(&self) -> Result<(), IntakeError> {
        self.set(false).await
    }

    async fn resume(&self) -> Result<(), IntakeError> {
        self.set(true).await
    }
}
