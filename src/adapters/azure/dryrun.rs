//! Dry-run Azure: shows the change-state requests a round would send and
//! sends nothing (`replay --sync` without `--send`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use url::Url;

use super::change_url;
use crate::adapters::wire::{ItsmRequest, RequestLog};
use crate::domain::ports::{AlertState, AlertStates, AzureError};

pub struct AzureDryRun {
    base: Url,
    api_version: String,
    log: Arc<RequestLog>,
}

impl AzureDryRun {
    pub fn new(base: Url, api_version: String, log: Arc<RequestLog>) -> AzureDryRun {
        AzureDryRun {
            base,
            api_version,
            log,
        }
    }
}

#[async_trait]
impl AlertStates for AzureDryRun {
    /// Never asked in a dry run (it writes no lease to recover from).
    async fn current(&self, _alert_id: &str) -> Result<AlertState, AzureError> {
        Ok(AlertState::New)
    }

    async fn change(
        &self,
        alert_id: &str,
        state: AlertState,
        comment: &str,
    ) -> Result<(), AzureError> {
        let url = change_url(&self.base, alert_id, state, &self.api_version)?;
        self.log.push(ItsmRequest {
            method: "POST",
            path: url.to_string(),
            body: Some(json!({ "comments": comment })),
        });
        Ok(())
    }
}
