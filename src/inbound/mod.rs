//! The inbound side: the roles the one binary can play, each a small module
//! that turns its trigger into calls on the domain. Lambda's `Handler`
//! setting (passed as `_HANDLER`) picks the role; every role is handed the
//! same [`App`], built once per container by `bootstrap`.
//!
//! - `http`: the function URL webhook Azure Monitor posts alerts to
//!   (`Handler` anything but the names below, SAM's usual `bootstrap` included);
//! - `worker`: the delivery queue's consumer (`Handler: worker`);
//! - `sync`: the scheduled round that carries ITSM changes back to Azure
//!   (`Handler: sync`).
//!
//! `common_schema` turns Azure's wire format into the domain's `Alert` for
//! every role that receives alerts.

pub mod common_schema;
pub mod group_round;
pub mod http;
pub mod sync;
pub mod worker;

use std::sync::Arc;

use crate::adapters::queue::{Outbox, SqsQueue};
use crate::config::DeliveryConfig;
use crate::domain::delivery::Delivery;
use crate::domain::grouping::Grouped;
use crate::domain::ports::{IncidentChanges, Intake, SyncStore, TokenVerifier};
use crate::domain::state_machine::Bridge;
use crate::domain::sync::AlertSync;

/// Everything a role needs, built once per container.
pub struct App {
    pub verifier: Arc<dyn TokenVerifier>,
    pub bridge: Bridge,
    /// The one path alerts are posted to (`WEBHOOK_PATH`, default `/`).
    pub path: String,
    /// CloudWatch metrics namespace; `None` prints no metric lines (replay).
    pub metrics: Option<String>,
    /// Store and forward, when a delivery queue is configured.
    pub delivery: Option<Delivery>,
    /// The queue behind `delivery`, for the roles that consume it.
    pub queue: QueueHandle,
    pub delivery_config: DeliveryConfig,
    /// The sync role's round, when Azure credentials are configured.
    pub sync: Option<AlertSync>,
    /// The worker's event source mapping, which the scheduled round pauses
    /// while the ITSM is down (`WORKER_EVENT_SOURCE_MAPPING`).
    pub intake: Option<Arc<dyn Intake>>,
    /// What a sync round reads, configured or not (`replay --sync` dry
    /// runs); `None` in apps assembled by hand.
    pub sync_feed: Option<SyncFeed>,
    /// Grouping, when a routing rule groups alerts: the scheduled round
    /// writes its batched updates and resolves its parents.
    pub groups: Option<Arc<Grouped>>,
}

/// The ITSM's change feed and the store's sync side.
#[derive(Clone)]
pub struct SyncFeed {
    pub changes: Arc<dyn IncidentChanges>,
    pub store: Arc<dyn SyncStore>,
}

/// The delivery queue as its consumers see it.
#[derive(Clone, Default)]
pub enum QueueHandle {
    #[default]
    None,
    /// Consumed by the worker role.
    Sqs(Arc<SqsQueue>),
    /// Drained by `replay --drain`.
    Outbox(Outbox),
}

/// The role this container plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The function URL webhook.
    Webhook,
    /// The SQS consumer that delivers queued notifications.
    Worker,
    /// The scheduled ITSM → Azure round.
    Sync,
}

impl Role {
    /// The role for Lambda's `Handler` value: `worker`, `sync`, else the webhook
    /// (so a deployment with any other handler name serves alerts).
    pub fn from_handler(handler: Option<&str>) -> Role {
        match handler {
            Some("worker") => Role::Worker,
            Some("sync") => Role::Sync,
            _ => Role::Webhook,
        }
    }

    /// Serves this role's Lambda events until the runtime stops.
    ///
    /// # Errors
    /// What the Lambda runtime reports (it could not reach its API).
    pub async fn run(self, app: Arc<App>) -> Result<(), lambda_http::Error> {
        // Boxed: the runtimes' futures are deep, and one role runs per container.
        match self {
            Role::Webhook => Box::pin(http::run(app)).await,
            Role::Worker => Box::pin(worker::run(app)).await,
            Role::Sync => Box::pin(sync::run(app)).await,
        }
    }
}
