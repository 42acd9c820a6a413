//! Builds the app from configuration: every client once per container.

use std::sync::Arc;

use crate::adapters::dryrun::DryRun;
use crate::adapters::entra::EntraVerifier;
use crate::adapters::servicenow::{ServiceNowClient, ServiceNowFormat};
use crate::adapters::store::RedbStore;
use crate::adapters::wire::RequestLog;
use crate::config::{Config, ItsmConfig};
use crate::domain::pipeline::{Bridge, Clock};
use crate::domain::ports::{CorrelationStore, ItsmClient};
use crate::http::App;

#[derive(Debug, thiserror::Error)]
#[error("start-up: {0}")]
pub struct StartError(pub String);

/// `log`, when given, receives every ITSM request (dry-run or real): replay shows them.
pub fn build(
    config: &Config,
    clock: Clock,
    log: Option<Arc<RequestLog>>,
) -> Result<App, StartError> {
    let itsm: Arc<dyn ItsmClient> = match &config.itsm {
        ItsmConfig::ServiceNow(sn) => {
            Arc::new(ServiceNowClient::new(sn.clone(), log).map_err(StartError)?)
        }
        ItsmConfig::DryRun(fields) => Arc::new(DryRun::new(
            Box::new(ServiceNowFormat {
                fields: fields.clone(),
            }),
            log,
        )),
    };
    let store: Arc<dyn CorrelationStore> =
        Arc::new(RedbStore::open(&config.state_dir).map_err(|e| StartError(e.to_string()))?);
    Ok(App {
        verifier: Arc::new(EntraVerifier::new(config.entra.clone(), clock.clone())),
        bridge: Bridge::new(itsm, store, config.settings.clone(), clock),
    })
}
