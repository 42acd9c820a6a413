//! Builds the app from configuration: every client once per container,
//! whichever role the container plays. Nothing here touches the network;
//! keys, secrets and tokens are fetched on first use.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::adapters::HttpClientError;
use crate::adapters::azure::{AzureAlerts, AzureCredential};
use crate::adapters::bmc::{BmcClient, BmcFormat, BmcLogin};
use crate::adapters::dryrun::DryRun;
use crate::adapters::entra::EntraVerifier;
use crate::adapters::jira::{JiraAuth, JiraClient, JiraFormat};
use crate::adapters::pacing::Paced;
use crate::adapters::queue::{EventSourceIntake, SqsQueue};
use crate::adapters::secrets::{CachedSecret, CredentialSource, SecretError, SecretReader};
use crate::adapters::servicenow::{Credentials, ServiceNowClient, ServiceNowFormat};
use crate::adapters::store::{DynamoStore, RedbStore};
use crate::adapters::wire::{RequestLog, WireFormat};
use crate::config::{
    Config, CredentialsConfig, DryRunFormat, ItsmConfig, QueueConfig, StoreConfig,
};
use crate::domain::breaker::Breaker;
use crate::domain::delivery::Delivery;
use crate::domain::ports::{
    BreakerStore, Clock, CorrelationStore, DeliveryQueue, IncidentChanges, Intake, ItsmClient,
    StoreError, SyncStore,
};
use crate::domain::state_machine::Bridge;
use crate::domain::sync::{AlertSync, SyncSettings};
use crate::inbound::{App, QueueHandle, SyncFeed};

/// Why the container cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("start-up: {0}")]
    HttpClient(#[from] HttpClientError),
    #[error("start-up: cannot open the embedded correlation store: {0}")]
    Store(#[source] StoreError),
    /// A setting names an AWS service but the SDK configuration was not
    /// loaded ([`aws_config`] decides that from the same settings).
    #[error("start-up: {0} needs the AWS SDK configuration, which was not loaded")]
    AwsNotLoaded(&'static str),
    /// The local outbox lives in the embedded store's file.
    #[error("start-up: the local outbox needs the embedded store; unset CORRELATION_TABLE")]
    OutboxNeedsEmbeddedStore,
}

/// The most any request for verbosity gets from these crates: the first
/// four write raw events or signed requests past it; the others dump
/// connection and SDK internals nobody needs from a bridge's log.
const HELD_BELOW_TRACE: [(&str, tracing::level_filters::LevelFilter); 13] = {
    use tracing::level_filters::LevelFilter as L;
    [
        ("lambda_runtime", L::INFO),
        ("lambda_runtime_api_client", L::INFO),
        ("lambda_http", L::INFO),
        ("aws_sigv4", L::INFO),
        ("aws_smithy_runtime", L::DEBUG),
        ("aws_smithy_runtime_api", L::DEBUG),
        ("aws_smithy_http_client", L::DEBUG),
        ("aws_config", L::DEBUG),
        ("hyper", L::DEBUG),
        ("hyper_util", L::DEBUG),
        ("h2", L::DEBUG),
        ("reqwest", L::DEBUG),
        ("rustls", L::DEBUG),
    ]
};

/// Logging for every role: Lambda's advanced logging controls
/// (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`; `AWS_LAMBDA_LOG_FORMAT=JSON`), as
/// `lambda_runtime`'s default subscriber reads them, with one difference:
/// the crates that write secrets at their most verbose levels are held
/// below those levels whatever is asked, so that TRACE stays safe to turn on.
/// `lambda_runtime` logs each raw event (with its `Authorization` header) at
/// TRACE; `aws_sigv4` logs canonical requests (with the session token).
pub fn init_logging() {
    use std::str::FromStr;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};

    // A level (AWS_LAMBDA_LOG_LEVEL), else RUST_LOG's directives
    // (`info`, `itsm_bridge=debug,hyper=info`); what cannot be read: INFO.
    let asked = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|l| LevelFilter::from_str(&l).ok())
        .map(|l| Targets::new().with_default(l))
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .and_then(|s| Targets::from_str(&s).ok())
        })
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let safe = HELD_BELOW_TRACE.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let layer = fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let layer = if json {
        layer.json().with_filter(asked.and(safe)).boxed()
    } else {
        layer.with_filter(asked.and(safe)).boxed()
    };
    // A second call (tests, replay) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The AWS SDK's shared configuration (region, credentials chain,
/// `AWS_ENDPOINT_URL`), loaded only when a setting needs AWS.
pub async fn aws_config(config: &Config) -> Option<aws_config::SdkConfig> {
    if config.uses_aws() {
        Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    } else {
        None
    }
}

fn source<T: Clone>(
    config: &CredentialsConfig<T>,
    aws: Option<&aws_config::SdkConfig>,
    parse: fn(&Value) -> Result<T, SecretError>,
    var: &'static str,
) -> Result<CredentialSource<T>, StartError> {
    Ok(match config {
        CredentialsConfig::Fixed(c) => CredentialSource::Fixed(c.clone()),
        CredentialsConfig::Secret { secret_id, ttl } => {
            let client =
                aws_sdk_secretsmanager::Client::new(aws.ok_or(StartError::AwsNotLoaded(var))?);
            let ttl: Duration = *ttl;
            CredentialSource::Secret(CachedSecret::new(
                SecretReader::new(client, secret_id),
                ttl,
                parse,
            ))
        }
    })
}

/// `log`, when given, receives every ITSM request (dry-run or real): replay shows them.
pub fn build(
    config: &Config,
    aws: Option<&aws_config::SdkConfig>,
    clock: Clock,
    log: Option<Arc<RequestLog>>,
) -> Result<App, StartError> {
    let (itsm, changes): (Arc<dyn ItsmClient>, Arc<dyn IncidentChanges>) = match &config.itsm {
        ItsmConfig::ServiceNow(sn, credentials) => {
            let credentials = source(credentials, aws, Credentials::from_secret, "ITSM_SECRET_ID")?;
            let client = Arc::new(ServiceNowClient::new(sn.clone(), credentials, log)?);
            (client.clone(), client)
        }
        ItsmConfig::BmcHelix(bmc, login) => {
            let login = source(login, aws, BmcLogin::from_secret, "ITSM_SECRET_ID")?;
            let client = Arc::new(BmcClient::new(bmc.clone(), login, log)?);
            (client.clone(), client)
        }
        ItsmConfig::Jira(jira, auth) => {
            let auth = source(auth, aws, JiraAuth::from_secret, "ITSM_SECRET_ID")?;
            let client = Arc::new(JiraClient::new(jira.clone(), auth, log)?);
            (client.clone(), client)
        }
        ItsmConfig::DryRun(format) => {
            let format: Box<dyn WireFormat> = match format {
                DryRunFormat::ServiceNow(fields) => Box::new(ServiceNowFormat {
                    fields: fields.clone(),
                }),
                DryRunFormat::BmcHelix(fields) => Box::new(BmcFormat {
                    fields: fields.clone(),
                }),
                DryRunFormat::Jira(fields) => Box::new(JiraFormat {
                    fields: fields.clone(),
                }),
            };
            let dry = Arc::new(DryRun::new(format, log));
            (dry.clone(), dry)
        }
    };
    type Stores = (
        Arc<dyn CorrelationStore>,
        Arc<dyn SyncStore>,
        Arc<dyn BreakerStore>,
    );
    let ((store, sync_store, breakers), outbox): (Stores, _) = match &config.store {
        StoreConfig::Embedded(dir) => {
            let redb = Arc::new(RedbStore::open(dir).map_err(StartError::Store)?);
            let outbox = redb.outbox();
            ((redb.clone(), redb.clone(), redb), Some(outbox))
        }
        StoreConfig::DynamoDb { table } => {
            let client = aws_sdk_dynamodb::Client::new(
                aws.ok_or(StartError::AwsNotLoaded("CORRELATION_TABLE"))?,
            );
            let dynamo = Arc::new(DynamoStore::new(client, table));
            ((dynamo.clone(), dynamo.clone(), dynamo), None)
        }
    };
    let sync_feed = SyncFeed {
        changes,
        store: sync_store,
    };
    let sync = match &config.sync {
        None => None,
        Some(sc) => {
            let credential = source(
                &sc.credential,
                aws,
                AzureCredential::from_secret,
                "AZURE_SECRET_ID",
            )?;
            let azure = Arc::new(AzureAlerts::new(&sc.azure, credential)?);
            Some(AlertSync::new(
                sync_feed.changes.clone(),
                sync_feed.store.clone(),
                azure,
                SyncSettings {
                    lease_secs: config.settings.lease_secs,
                    ..sc.settings.clone()
                },
                clock.clone(),
            ))
        }
    };
    let intake: Option<Arc<dyn Intake>> = match &config.delivery.event_source_mapping {
        None => None,
        Some(uuid) => {
            let aws = aws.ok_or(StartError::AwsNotLoaded("WORKER_EVENT_SOURCE_MAPPING"))?;
            let client = aws_sdk_lambda::Client::new(aws);
            Some(Arc::new(EventSourceIntake::new(client, uuid)))
        }
    };
    let queue = match &config.delivery.queue {
        QueueConfig::None => QueueHandle::None,
        QueueConfig::Sqs {
            url,
            dead_letter_url,
        } => {
            let client = aws_sdk_sqs::Client::new(
                aws.ok_or(StartError::AwsNotLoaded("DELIVERY_QUEUE_URL"))?,
            );
            QueueHandle::Sqs(Arc::new(SqsQueue::new(
                client,
                url,
                dead_letter_url.clone(),
            )))
        }
        QueueConfig::Outbox => {
            QueueHandle::Outbox(outbox.ok_or(StartError::OutboxNeedsEmbeddedStore)?)
        }
    };
    let queue_port: Option<Arc<dyn DeliveryQueue>> = match &queue {
        QueueHandle::None => None,
        QueueHandle::Sqs(sqs) => Some(sqs.clone()),
        QueueHandle::Outbox(outbox) => Some(Arc::new(outbox.clone())),
    };
    // Inline attempts get the short budget, queued deliveries the worker's.
    let delivery = queue_port.map(|queue| {
        let d = &config.delivery;
        let mut inline = config.settings.clone();
        inline.retry.deadline = d.inline_budget;
        let mut worker = config.settings.clone();
        worker.retry.deadline = d.worker_deadline;
        // A paced attempt waits for its slots: retries leave room for that too.
        worker.retry.attempt += d.paced_wait;
        let breaker = Breaker::new(breakers.clone(), itsm.kind(), d.breaker, clock.clone());
        // Queued deliveries at the ITSM's pace; inline attempts unpaced.
        let paced: Arc<dyn ItsmClient> = match d.pace_per_ks {
            Some(per_ks) => Arc::new(Paced::new(itsm.clone(), per_ks as f64 / 1000.0)),
            None => itsm.clone(),
        };
        Delivery::new(
            Bridge::new(itsm.clone(), store.clone(), inline, clock.clone()),
            Bridge::new(paced, store.clone(), worker, clock.clone()),
            queue,
            Arc::new(breaker),
            clock.clone(),
        )
    });
    Ok(App {
        verifier: Arc::new(EntraVerifier::new(config.entra.clone(), clock.clone())),
        bridge: Bridge::new(itsm, store, config.settings.clone(), clock),
        path: config.webhook_path.clone(),
        metrics: config.metrics_namespace.clone(),
        delivery,
        queue,
        delivery_config: config.delivery.clone(),
        sync,
        intake,
        sync_feed: Some(sync_feed),
    })
}
