//! The sync role (ITSM → Azure): off unless `AZURE_CLIENT_ID` is set. Names
//! follow azure-identity's environment credential where they apply.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::source::{CredentialsConfig, https_url};
use super::{ConfigError, Env, err, is_guid};
use crate::adapters::azure::{AzureConfig, AzureCredential, Certificate, DEFAULT_API_VERSION};
use crate::domain::sync::SyncSettings;

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub azure: AzureConfig,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`, or
    /// `AZURE_SECRET_ID` (Secrets Manager: `{"client_secret"}` or `{"certificate"}`).
    pub credential: CredentialsConfig<AzureCredential>,
    pub settings: SyncSettings,
}

impl SyncConfig {
    /// `None` when the sync role is not configured (`AZURE_CLIENT_ID` unset).
    pub fn from_env(env: &Env) -> Result<Option<SyncConfig>, ConfigError> {
        let Some(client_id) = env.get("AZURE_CLIENT_ID") else {
            return Ok(None);
        };
        if !is_guid(&client_id) {
            return Err(err(
                "AZURE_CLIENT_ID",
                "must be the app registration's Application (client) ID, a GUID",
            ));
        }
        let tenant_id = env.required(
            "AZURE_TENANT_ID",
            "the sync role needs the tenant of its app registration",
        )?;
        // It becomes a path segment of the token endpoint.
        if !tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        {
            return Err(err(
                "AZURE_TENANT_ID",
                "must be a tenant id (GUID) or domain name",
            ));
        }
        let authority = url_or(
            env,
            "AZURE_AUTHORITY_HOST",
            "https://login.microsoftonline.com/",
        )?;
        let resource_manager = url_or(
            env,
            "AZURE_RESOURCE_MANAGER_URL",
            "https://management.azure.com/",
        )?;
        let credential = match (
            env.get("AZURE_SECRET_ID"),
            env.get("AZURE_CLIENT_SECRET"),
            env.get("AZURE_CLIENT_CERTIFICATE_PATH"),
        ) {
            (Some(secret_id), None, None) => CredentialsConfig::Secret {
                secret_id,
                ttl: Duration::from_secs(env.number("ITSM_SECRET_TTL_SECS", 3600)?),
            },
            (None, Some(secret), None) => CredentialsConfig::Fixed(AzureCredential::Secret(secret)),
            (None, None, Some(path)) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| err("AZURE_CLIENT_CERTIFICATE_PATH", format!("{path}: {e}")))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| err("AZURE_CLIENT_CERTIFICATE_PATH", format!("{path}: {e}")))?;
                CredentialsConfig::Fixed(AzureCredential::Certificate(Arc::new(cert)))
            }
            (None, None, None) => {
                return Err(err(
                    "AZURE_CLIENT_SECRET",
                    "is not set; the sync role needs AZURE_CLIENT_SECRET, \
                     AZURE_CLIENT_CERTIFICATE_PATH or AZURE_SECRET_ID",
                ));
            }
            _ => {
                return Err(err(
                    "AZURE_CLIENT_SECRET",
                    "set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_SECRET_ID",
                ));
            }
        };
        let defaults = SyncSettings::default();
        let secs = |var, default: i64| env.number(var, default as u64).map(|n| n as i64);
        let settings = SyncSettings {
            acknowledge: match env.get("SYNC_ACKNOWLEDGE").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(v) => {
                    return Err(err(
                        "SYNC_ACKNOWLEDGE",
                        format!("{v:?} is not true or false"),
                    ));
                }
            },
            overlap_secs: secs("SYNC_OVERLAP_SECS", defaults.overlap_secs)?,
            settle_secs: secs("SYNC_SETTLE_SECS", defaults.settle_secs)?,
            first_lookback_secs: secs("SYNC_FIRST_LOOKBACK_SECS", defaults.first_lookback_secs)?,
            page_size: env.number("SYNC_PAGE_SIZE", defaults.page_size as u64)? as usize,
            max_pages: env.number("SYNC_MAX_PAGES", defaults.max_pages as u64)? as usize,
            budget: Duration::from_secs(
                env.number("SYNC_ROUND_BUDGET_SECS", defaults.budget.as_secs())?,
            ),
            max_hold_secs: secs("SYNC_MAX_HOLD_SECS", defaults.max_hold_secs)?,
            ..defaults
        };
        // A caught-up watermark is the settle time old: a limit below that
        // would call every round held.
        if settings.max_hold_secs <= settings.settle_secs {
            return Err(err(
                "SYNC_MAX_HOLD_SECS",
                format!(
                    "{} must exceed SYNC_SETTLE_SECS ({}); a few schedule intervals or more",
                    settings.max_hold_secs, settings.settle_secs
                ),
            ));
        }
        Ok(Some(SyncConfig {
            azure: AzureConfig {
                tenant_id,
                client_id,
                authority,
                resource_manager,
                api_version: env
                    .get("AZURE_ALERTS_API_VERSION")
                    .unwrap_or_else(|| DEFAULT_API_VERSION.into()),
                timeout: Duration::from_millis(env.number("AZURE_TIMEOUT_MS", 5000)?),
            },
            credential,
            settings,
        }))
    }
}

fn url_or(env: &Env, var: &'static str, default: &str) -> Result<Url, ConfigError> {
    match env.get(var) {
        None => Ok(Url::parse(default).expect("default URL")),
        Some(_) => {
            let mut url = https_url(env, var, default)?;
            // A base URL must end in `/` for joins to keep its path.
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            Ok(url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<SyncConfig, ConfigError> {
        let mut vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in [
            ("AZURE_CLIENT_ID", "99998888-aaaa-7777-bbbb-666655554444"),
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_SECRET", "s"),
        ] {
            vars.push((k.into(), v.into()));
        }
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Ok(SyncConfig::from_env(&Env::new(&lookup))?.expect("configured"))
    }

    #[test]
    fn the_round_budget_and_the_hold_limit_are_read_and_checked() {
        let defaults = config(&[]).unwrap().settings;
        assert_eq!(
            (defaults.budget, defaults.max_hold_secs),
            (Duration::from_secs(90), 3600)
        );
        let set = config(&[
            ("SYNC_ROUND_BUDGET_SECS", "30"),
            ("SYNC_MAX_HOLD_SECS", "900"),
        ])
        .unwrap()
        .settings;
        assert_eq!(
            (set.budget, set.max_hold_secs),
            (Duration::from_secs(30), 900)
        );
        let e = config(&[("SYNC_MAX_HOLD_SECS", "60")]).unwrap_err();
        assert_eq!(e.var, "SYNC_MAX_HOLD_SECS");
        assert!(e.problem.contains("SYNC_SETTLE_SECS"), "{}", e.problem);
    }
}
