//! The inbound side: the roles the one binary can play, each a small module
//! that turns its trigger into calls on the domain. Lambda's `Handler`
//! setting (passed as `_HANDLER`) picks the role; every role is handed the
//! same [`App`], built once per container by `bootstrap`.
//!
//! - `http`: the function URL webhook Azure Monitor posts alerts to.
//!
//! `common_schema` turns Azure's wire format into the domain's `Alert` for
//! every role that receives alerts.

pub mod common_schema;
pub mod http;

use std::sync::Arc;

use crate::domain::ports::TokenVerifier;
use crate::domain::state_machine::Bridge;

/// Everything a role needs, built once per container.
pub struct App {
    pub verifier: Arc<dyn TokenVerifier>,
    pub bridge: Bridge,
    /// The one path alerts are posted to (`WEBHOOK_PATH`, default `/`).
    pub path: String,
    /// CloudWatch metrics namespace; `None` prints no metric lines (replay).
    pub metrics: Option<String>,
}

/// The role this container plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The function URL webhook.
    Webhook,
}

impl Role {
    /// The role for Lambda's `Handler` value. Only the webhook exists so
    /// far, and it stays the answer for any value (SAM's usual `bootstrap`
    /// included), so a deployment never starts without serving alerts.
    pub fn from_handler(_handler: Option<&str>) -> Role {
        Role::Webhook
    }

    /// Serves this role's Lambda events until the runtime stops.
    ///
    /// # Errors
    /// What the Lambda runtime reports (it could not reach its API).
    pub async fn run(self, app: Arc<App>) -> Result<(), lambda_http::Error> {
        match self {
            Role::Webhook => http::run(app).await,
        }
    }
}
