//! Every setting, from the environment, checked once at start. Errors name
//! the variable to fix. docs/CONFIGURATION.md's reference mirrors this file.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::adapters::entra::{self, EntraConfig, KeySource};
use crate::domain::incident::routing::Routing;
use crate::domain::retry::RetryPolicy;
use crate::domain::settings::{RefirePolicy, Settings};

mod delivery;
mod itsm;
mod jira;
mod limits;
pub mod numbers;
mod pace;
mod source;
mod sync;
#[cfg(test)]
mod template;
mod worker;

pub use delivery::{DeliveryConfig, QueueConfig};
pub use itsm::{DryRunFormat, ItsmConfig};
pub use limits::Attempt;
pub use source::CredentialsConfig;
pub use sync::SyncConfig;

/// Azure caps a common-schema alert at 256 KB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded redb store in this folder.
    Embedded(PathBuf),
    /// `CORRELATION_TABLE`: a DynamoDB table.
    DynamoDb { table: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The path alerts are posted to.
    pub webhook_path: String,
    /// Namespace of the EMF metric lines; `None` (`METRICS_NAMESPACE=off`) for none.
    pub metrics_namespace: Option<String>,
    pub entra: EntraConfig,
    pub itsm: ItsmConfig,
    pub store: StoreConfig,
    pub settings: Settings,
    pub delivery: DeliveryConfig,
    /// The sync role's Azure side; `None` when not configured.
    pub sync: Option<SyncConfig>,
}

impl Config {
    /// Whether anything needs the AWS SDK's configuration.
    pub fn uses_aws(&self) -> bool {
        matches!(self.store, StoreConfig::DynamoDb { .. })
            || matches!(self.delivery.queue, QueueConfig::Sqs { .. })
            || self.delivery.event_source_mapping.is_some()
            || self.itsm.secret().is_some()
            || self
                .sync
                .as_ref()
                .is_some_and(|s| matches!(s.credential, CredentialsConfig::Secret { .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Reads variables through `lookup`, so tests and `replay` need not touch
/// the process environment.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { lookup }
    }

    pub(crate) fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&self, var: &'static str, hint: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| err(var, format!("is not set; {hint}")))
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A numeric setting, within its range (`numbers::NUMBERS`); `default`
    /// when unset.
    pub(crate) fn number(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => {
                let value = v.parse().map_err(|_| {
                    let range = numbers::range(var)
                        .map_or(String::new(), |n| format!(" from {} to {}", n.min, n.max));
                    err(var, format!("{v:?} is not a whole number{range}"))
                })?;
                numbers::checked(var, value)
            }
        }
    }
}

pub(crate) fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

pub(super) fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        // Entra first: without it nothing may be served at all.
        let entra = entra_config(env)?;
        numbers::check_all(env)?;
        let itsm = itsm::itsm_config(env)?;
        let routing = routing(env, itsm.severity_table().max(), itsm.kind())?;
        let severity = match env.get("SEVERITY_MAP") {
            Some(spec) => itsm
                .severity_table()
                .with(&spec)
                .map_err(|e| err("SEVERITY_MAP", e))?,
            None => itsm.severity_table(),
        };
        let webhook_path = env.get("WEBHOOK_PATH").unwrap_or_else(|| "/".into());
        if !webhook_path.starts_with('/') {
            return Err(err(
                "WEBHOOK_PATH",
                format!("{webhook_path:?} must start with /"),
            ));
        }
        let lease_secs = env.number("CLAIM_LEASE_SECS", 60)?;
        let attempt = Attempt::from_env(env, &itsm, routing.child_incidents())?;
        let delivery = DeliveryConfig::from_env(env, lease_secs, &attempt)?;
        let mut sync = SyncConfig::from_env(env)?;
        let ttl_secs =
            limits::record_ttl_secs(env, delivery.queue != QueueConfig::None, sync.is_some())?;
        if let Some(s) = &mut sync {
            s.settings.record_ttl_secs = ttl_secs;
        }
        Ok(Config {
            delivery,
            sync,
            metrics_namespace: match env.get("METRICS_NAMESPACE").as_deref() {
                Some("off") => None,
                Some(ns) => Some(ns.to_string()),
                None => Some("ItsmBridge".into()),
            },
            webhook_path,
            entra,
            itsm,
            store: match env.get("CORRELATION_TABLE") {
                Some(table) => StoreConfig::DynamoDb { table },
                None => StoreConfig::Embedded(
                    env.get("STATE_DIR")
                        .map_or_else(|| std::env::temp_dir().join("itsm-bridge"), PathBuf::from),
                ),
            },
            settings: Settings {
                routing,
                severity,
                lease_secs: lease_secs as i64,
                refire: match env.get("REFIRE_POLICY") {
                    None => RefirePolicy::default(),
                    Some(p) => RefirePolicy::parse(&p).ok_or_else(|| {
                        err(
                            "REFIRE_POLICY",
                            format!("{p:?} is not one of ignore, reopen, new, note"),
                        )
                    })?,
                },
                retry: RetryPolicy::new(
                    Duration::from_millis(env.number("ITSM_DEADLINE_MS", 8000)?),
                    attempt.timeout,
                    attempt.requests,
                ),
                ttl_secs,
                queue_horizon_secs: worker::QUEUE_HORIZON_SECS,
                create_settle_secs: create_settle_secs(env)?,
            },
        })
    }
}

/// `ITSM_CREATE_SETTLE_SECS`: how long an unanswered create may take to
/// show in the ITSM's search, when the ITSM's own figure does not fit.
fn create_settle_secs(env: &Env) -> Result<Option<i64>, ConfigError> {
    if env.get("ITSM_CREATE_SETTLE_SECS").is_none() {
        return Ok(None);
    }
    let secs = env.number("ITSM_CREATE_SETTLE_SECS", 0)?;
    Ok(Some(secs as i64))
}

/// `ROUTING_RULES` (inline JSON) or `ROUTING_RULES_FILE` (a path); errors
/// name the variable and the line, column or field.
fn routing(env: &Env, max_level: u8, itsm_kind: &str) -> Result<Routing, ConfigError> {
    let (var, text) = match (env.get("ROUTING_RULES"), env.get("ROUTING_RULES_FILE")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "ROUTING_RULES",
                "set ROUTING_RULES or ROUTING_RULES_FILE, not both",
            ));
        }
        (Some(json), None) => ("ROUTING_RULES", json),
        (None, Some(path)) => (
            "ROUTING_RULES_FILE",
            std::fs::read_to_string(&path)
                .map_err(|e| err("ROUTING_RULES_FILE", format!("{path}: {e}")))?,
        ),
        (None, None) => return Ok(Routing::default()),
    };
    let routing = Routing::parse(&text, max_level).map_err(|e| err(var, e))?;
    routing
        .check_groups_for(itsm_kind)
        .map_err(|e| err(var, e))?;
    Ok(routing)
}

pub fn entra_config(env: &Env) -> Result<EntraConfig, ConfigError> {
    let tenant_id = env.required(
        "ENTRA_TENANT_ID",
        "set it to the Directory (tenant) ID of your app registration",
    )?;
    if !is_guid(&tenant_id) {
        return Err(err(
            "ENTRA_TENANT_ID",
            format!("{tenant_id:?} is not a tenant GUID"),
        ));
    }
    let audiences = env.list("ENTRA_AUDIENCES");
    if audiences.is_empty() {
        return Err(err(
            "ENTRA_AUDIENCES",
            "is not set; set it to your app's Application ID URI (api://…) and/or client id",
        ));
    }
    let mut allowed_app_ids = env.list("ENTRA_ALLOWED_APP_IDS");
    if allowed_app_ids.is_empty() {
        allowed_app_ids.push(entra::ACTION_GROUP_APP_ID.to_string());
    }
    let authority = env
        .get("ENTRA_AUTHORITY")
        .unwrap_or_else(|| entra::PUBLIC_AUTHORITY.to_string());
    let authority_url =
        Url::parse(&authority).map_err(|e| err("ENTRA_AUTHORITY", e.to_string()))?;
    if authority_url.scheme() != "https" && !entra::is_loopback(&authority_url) {
        return Err(err("ENTRA_AUTHORITY", "must be https"));
    }
    let keys = match env.get("ENTRA_JWKS_URL") {
        Some(url) => KeySource::parse(&url).map_err(|e| err("ENTRA_JWKS_URL", e))?,
        None => EntraConfig::default_keys(&authority, &tenant_id)
            .map_err(|e| err("ENTRA_AUTHORITY", e))?,
    };
    Ok(EntraConfig {
        tenant_id,
        audiences,
        allowed_app_ids,
        required_role: env.get("ENTRA_REQUIRED_ROLE"),
        authority,
        keys,
        leeway_secs: env.number("ENTRA_LEEWAY_SECS", 60)?,
        key_refresh: Duration::from_secs(env.number("ENTRA_KEY_REFRESH_SECS", 24 * 3600)?),
        unknown_kid_interval: Duration::from_secs(
            env.number("ENTRA_UNKNOWN_KID_INTERVAL_SECS", 300)?,
        ),
    })
}

#[cfg(test)]
mod tests;
