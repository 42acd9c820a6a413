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
use crate::domain::delivery::Delivery;
use crate::domain::delivery::breaker::Breaker;
use crate::domain::grouping::Grouped;
use crate::domain::ports::{
    BreakerStore, Clock, CorrelationStore, DeliveryQueue, GroupStore, IncidentChanges, Intake,
    ItsmClient, StoreError, SyncStore,
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
    /// loaded ([`aws_config()`] decides that from the same settings).
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
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};

    let var = |k: &str| std::env::var(k).ok();
    let asked = log_filter(var("AWS_LAMBDA_LOG_LEVEL"), var("RUST_LOG"));
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
        // The current span (the runtime's, with `requestId` and the X-Ray
        // trace id) stays on every line; the list of all spans only
        // repeated it (a sixth of the webhook's log bytes).
        layer
            .json()
            .with_span_list(false)
            .with_filter(asked.and(safe))
            .boxed()
    } else {
        layer.with_filter(asked.and(safe)).boxed()
    };
    // A second call (tests, replay) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// What is asked for, read as `EnvFilter` read it before (without its span
/// and field filters, which need a regex engine: BENCHMARKS.md §11): the
/// default level is `AWS_LAMBDA_LOG_LEVEL`'s, else `RUST_LOG`'s bare level,
/// else INFO; `RUST_LOG`'s `target=level` directives apply on top. A
/// directive that cannot be read is skipped, the rest kept, so that no
/// spelling of `RUST_LOG` silences the INFO lines operators rely on.
fn log_filter(
    lambda_level: Option<String>,
    rust_log: Option<String>,
) -> tracing_subscriber::filter::Targets {
    use std::str::FromStr;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    let directives: Vec<Targets> = rust_log
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        // `Targets` reads "" as ERROR, and a span filter (`a[b]=debug`) as
        // a target of that name: neither is what was meant.
        .filter(|d| !d.is_empty() && !d.contains(['[', ']', '{', '}']))
        .filter_map(|d| Targets::from_str(d).ok())
        .collect();
    let level = lambda_level
        .and_then(|l| LevelFilter::from_str(l.trim()).ok())
        .or_else(|| directives.iter().rev().find_map(Targets::default_level))
        .unwrap_or(LevelFilter::INFO);
    directives
        .into_iter()
        .flatten()
        .fold(Targets::new().with_default(level), |t, (target, level)| {
            t.with_target(target, level)
        })
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
        Arc<dyn GroupStore>,
    );
    let ((store, sync_store, breakers, group_store), outbox): (Stores, _) = match &config.store {
        StoreConfig::Embedded(dir) => {
            let redb = Arc::new(RedbStore::open(dir).map_err(StartError::Store)?);
            let outbox = redb.outbox();
            (
                (redb.clone(), redb.clone(), redb.clone(), redb),
                Some(outbox),
            )
        }
        StoreConfig::DynamoDb { table } => {
            let client = aws_sdk_dynamodb::Client::new(
                aws.ok_or(StartError::AwsNotLoaded("CORRELATION_TABLE"))?,
            );
            let dynamo = Arc::new(DynamoStore::new(client, table));
            (
                (dynamo.clone(), dynamo.clone(), dynamo.clone(), dynamo),
                None,
            )
        }
    };
    // Grouped alerts join their group instead of opening an incident; every
    // other call passes through (and always does without a `group` rule).
    let grouped = |client: Arc<dyn ItsmClient>| {
        Arc::new(Grouped::new(
            client,
            group_store.clone(),
            clock.clone(),
            &config.settings,
        ))
    };
    let groups = grouped(itsm.clone());
    let raw_itsm = itsm.clone();
    let itsm: Arc<dyn ItsmClient> = groups.clone();
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
            let sync = AlertSync::new(
                sync_feed.changes.clone(),
                sync_feed.store.clone(),
                azure,
                SyncSettings {
                    lease_secs: config.settings.lease_secs,
                    ..sc.settings.clone()
                },
                clock.clone(),
            );
            // A parent a person resolved closes its children's alerts.
            Some(match config.settings.routing.groups() {
                true => sync.with_groups(groups.clone()),
                false => sync,
            })
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
            Some(per_ks) => grouped(Arc::new(Paced::new(
                raw_itsm.clone(),
                per_ks as f64 / 1000.0,
            ))),
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
        groups: config.settings.routing.groups().then_some(groups),
    })
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    /// The most verbose level `f` lets through for `target`.
    fn level(f: &Targets, target: &str) -> LevelFilter {
        [
            tracing::Level::TRACE,
            tracing::Level::DEBUG,
            tracing::Level::INFO,
            tracing::Level::WARN,
            tracing::Level::ERROR,
        ]
        .into_iter()
        .find(|l| f.would_enable(target, l))
        .map_or(LevelFilter::OFF, LevelFilter::from_level)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.into())
    }

    #[test]
    fn a_target_directive_leaves_the_rest_at_info() {
        // RUST_LOG=itsm_bridge=debug must not silence the runtime's errors
        // or the summary lines of other targets.
        let f = log_filter(None, some("itsm_bridge=debug"));
        assert_eq!(level(&f, "itsm_bridge::inbound::http"), LevelFilter::DEBUG);
        assert_eq!(level(&f, "lambda_runtime"), LevelFilter::INFO);
        assert_eq!(level(&f, "reqwest"), LevelFilter::INFO);
    }

    #[test]
    fn rust_log_set_but_empty_is_info_not_silence() {
        for empty in ["", " "] {
            let f = log_filter(None, some(empty));
            assert_eq!(level(&f, "itsm_bridge"), LevelFilter::INFO, "{empty:?}");
        }
    }

    #[test]
    fn a_directive_that_cannot_be_read_drops_only_itself() {
        // EnvFilter's lossy reading, which RUST_LOG users know: a span
        // filter or a misspelt level does not throw the rest away.
        let f = log_filter(
            None,
            some("warn,itsm_bridge[handle]=debug,hyper=loud,h2=error"),
        );
        assert_eq!(level(&f, "reqwest"), LevelFilter::WARN);
        assert_eq!(level(&f, "h2"), LevelFilter::ERROR);
        assert_eq!(level(&f, "hyper"), LevelFilter::WARN);
    }

    #[test]
    fn lambda_level_is_the_default_and_rust_log_targets_still_apply() {
        let f = log_filter(some("error"), some("trace,itsm_bridge=info"));
        assert_eq!(level(&f, "reqwest"), LevelFilter::ERROR);
        assert_eq!(level(&f, "itsm_bridge"), LevelFilter::INFO);
        let f = log_filter(some("DEBUG"), None);
        assert_eq!(level(&f, "itsm_bridge"), LevelFilter::DEBUG);
    }

    #[test]
    fn nothing_readable_asked_is_info() {
        for (lambda, rust) in [
            (None, None),
            (some("verbose"), some("loud")),
            (None, some("x=loud")),
        ] {
            let f = log_filter(lambda.clone(), rust.clone());
            assert_eq!(
                level(&f, "itsm_bridge"),
                LevelFilter::INFO,
                "{lambda:?} {rust:?}"
            );
            assert_eq!(level(&f, "x"), LevelFilter::INFO, "{lambda:?} {rust:?}");
        }
    }
}
