//! Builds the app from configuration: every client once per container.
//! Nothing here touches the network; keys, secrets and tokens are fetched
//! on first use.

use std::sync::Arc;

use crate::adapters::dryrun::DryRun;
use crate::adapters::entra::EntraVerifier;
use crate::adapters::secrets::{CachedSecret, SecretReader};
use crate::adapters::servicenow::{
    CredentialSource, Credentials, ServiceNowClient, ServiceNowFormat,
};
use crate::adapters::store::{DynamoStore, RedbStore};
use crate::adapters::wire::RequestLog;
use crate::config::{Config, CredentialsConfig, ItsmConfig, StoreConfig};
use crate::domain::pipeline::{Bridge, Clock};
use crate::domain::ports::{CorrelationStore, ItsmClient};
use crate::http::App;

#[derive(Debug, thiserror::Error)]
#[error("start-up: {0}")]
pub struct StartError(pub String);

/// The AWS SDK's shared configuration (region, credentials chain,
/// `AWS_ENDPOINT_URL`), loaded only when a setting needs AWS.
pub async fn aws_config(config: &Config) -> Option<aws_config::SdkConfig> {
    if config.uses_aws() {
        Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    } else {
        None
    }
}

/// `log`, when given, receives every ITSM request (dry-run or real): replay shows them.
pub fn build(
    config: &Config,
    aws: Option<&aws_config::SdkConfig>,
    clock: Clock,
    log: Option<Arc<RequestLog>>,
) -> Result<App, StartError> {
    let needs_aws = || StartError("the AWS SDK configuration was not loaded".into());
    let itsm: Arc<dyn ItsmClient> = match &config.itsm {
        ItsmConfig::ServiceNow(sn, credentials) => {
            let source = match credentials {
                CredentialsConfig::Fixed(c) => CredentialSource::Fixed(c.clone()),
                CredentialsConfig::Secret { secret_id, ttl } => {
                    let client = aws_sdk_secretsmanager::Client::new(aws.ok_or_else(needs_aws)?);
                    CredentialSource::Secret(CachedSecret::new(
                        SecretReader::new(client, secret_id),
                        *ttl,
                        Credentials::from_secret,
                    ))
                }
            };
            Arc::new(ServiceNowClient::new(sn.clone(), source, log).map_err(StartError)?)
        }
        ItsmConfig::DryRun(fields) => Arc::new(DryRun::new(
            Box::new(ServiceNowFormat {
                fields: fields.clone(),
            }),
            log,
        )),
    };
    let store: Arc<dyn CorrelationStore> = match &config.store {
        StoreConfig::Embedded(dir) => {
            Arc::new(RedbStore::open(dir).map_err(|e| StartError(e.to_string()))?)
        }
        StoreConfig::DynamoDb { table } => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws.ok_or_else(needs_aws)?),
            table,
        )),
    };
    Ok(App {
        verifier: Arc::new(EntraVerifier::new(config.entra.clone(), clock.clone())),
        bridge: Bridge::new(itsm, store, config.settings.clone(), clock),
    })
}
