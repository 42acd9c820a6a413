//! Which ITSM, how to reach it, and with which credentials.

use std::time::Duration;

use super::source::{CredentialsConfig, credentials, https_url};
use super::{ConfigError, Env, err};
use crate::adapters::bmc::{BmcConfig, BmcFields, BmcLogin};
use crate::adapters::jira::{JiraAuth, JiraConfig, JiraFields};
use crate::adapters::servicenow::{Credentials, IncidentFields, Parts, ServiceNowConfig};
use crate::domain::incident::mapping::SeverityTable;

#[derive(Debug, Clone)]
pub enum ItsmConfig {
    ServiceNow(ServiceNowConfig, CredentialsConfig<Credentials>),
    BmcHelix(BmcConfig, CredentialsConfig<BmcLogin>),
    Jira(JiraConfig, CredentialsConfig<JiraAuth>),
    /// Shows (logs) the requests for this ITSM instead of sending them.
    DryRun(DryRunFormat),
}

#[derive(Debug, Clone)]
pub enum DryRunFormat {
    ServiceNow(IncidentFields),
    BmcHelix(BmcFields),
    Jira(JiraFields),
}

impl ItsmConfig {
    /// The ITSM's kind, as its client names it, dry run or not.
    pub fn kind(&self) -> &'static str {
        match self {
            ItsmConfig::ServiceNow(..) | ItsmConfig::DryRun(DryRunFormat::ServiceNow(_)) => {
                "servicenow"
            }
            ItsmConfig::BmcHelix(..) | ItsmConfig::DryRun(DryRunFormat::BmcHelix(_)) => "bmc-helix",
            ItsmConfig::Jira(..) | ItsmConfig::DryRun(DryRunFormat::Jira(_)) => "jira",
        }
    }

    /// `ITSM_SECRET_ID` and its cache time, when credentials come from Secrets Manager.
    pub fn secret(&self) -> Option<(&str, Duration)> {
        match self {
            ItsmConfig::ServiceNow(_, CredentialsConfig::Secret { secret_id, ttl })
            | ItsmConfig::BmcHelix(_, CredentialsConfig::Secret { secret_id, ttl })
            | ItsmConfig::Jira(_, CredentialsConfig::Secret { secret_id, ttl }) => {
                Some((secret_id, *ttl))
            }
            _ => None,
        }
    }

    /// The most requests one attempt of the state machine makes of this
    /// ITSM, and which they are: the retry policy leaves room for all of them
    /// (each up to `ITSM_TIMEOUT_MS`) before it starts an attempt. Counted on
    /// the way that succeeds, with the periodic login or token request; not
    /// the one-off second try after a refusal (a 401 that rereads the
    /// secret, a Jira transition id gone stale after a workflow change).
    /// With `child_incidents` (only ServiceNow takes them) an alert's
    /// attempt may also find and create its group's parent before its own
    /// incident, or resolve the parent with its own.
    pub fn requests_per_attempt(&self, child_incidents: bool) -> (u32, &'static str) {
        match self {
            ItsmConfig::ServiceNow(_, CredentialsConfig::Fixed(Credentials::Basic { .. }))
                if child_incidents =>
            {
                (
                    4,
                    "ServiceNow with child incidents: the group's parent found and created, \
                     then the child's find and create (or two resolves and their state checks)",
                )
            }
            ItsmConfig::ServiceNow(..) if child_incidents => (
                5,
                "ServiceNow with child incidents: the group's parent found and created, then the \
                 child's find and create (or two resolves and their state checks), and an OAuth \
                 token",
            ),
            ItsmConfig::ServiceNow(_, CredentialsConfig::Fixed(Credentials::Basic { .. })) => (
                2,
                "ServiceNow: find and create, or a resolve and its state check",
            ),
            ItsmConfig::ServiceNow(..) => (
                3,
                "ServiceNow: find and create, or a resolve and its state check, and an OAuth token",
            ),
            ItsmConfig::BmcHelix(..) => (
                4,
                "BMC Helix: find, create and read the new entry, and a login",
            ),
            ItsmConfig::Jira(..) => (
                3,
                "Jira: the issue's status, its transitions and the transition",
            ),
            ItsmConfig::DryRun(_) => (1, "a dry run sends nothing"),
        }
    }

    /// The default severity table on this ITSM's impact/urgency scale.
    pub fn severity_table(&self) -> SeverityTable {
        match self {
            ItsmConfig::BmcHelix(..) | ItsmConfig::DryRun(DryRunFormat::BmcHelix(_)) => {
                SeverityTable::bmc()
            }
            ItsmConfig::Jira(..) | ItsmConfig::DryRun(DryRunFormat::Jira(_)) => {
                SeverityTable::jira()
            }
            _ => SeverityTable::servicenow(),
        }
    }
}

pub(super) fn itsm_config(env: &Env) -> Result<ItsmConfig, ConfigError> {
    let kind = env.get("ITSM_KIND").unwrap_or_else(|| "servicenow".into());
    let dry_run = match env.get("ITSM_DRY_RUN").as_deref() {
        None | Some("false" | "0" | "no") => false,
        Some("true" | "1" | "yes") => true,
        Some(other) => {
            return Err(err(
                "ITSM_DRY_RUN",
                format!("{other:?} is not true or false"),
            ));
        }
    } || kind == "dry-run";
    let timeout = attempt_timeout(env)?;
    match kind.as_str() {
        "servicenow" | "dry-run" if dry_run => Ok(ItsmConfig::DryRun(DryRunFormat::ServiceNow(
            servicenow_fields(env),
        ))),
        "servicenow" => Ok(ItsmConfig::ServiceNow(
            ServiceNowConfig {
                instance_url: https_url(
                    env,
                    "SERVICENOW_INSTANCE_URL",
                    "https://<instance>.service-now.com",
                )?,
                fields: servicenow_fields(env),
                timeout,
            },
            credentials(env, servicenow_credentials)?,
        )),
        "bmc-helix" if dry_run => Ok(ItsmConfig::DryRun(DryRunFormat::BmcHelix(bmc_fields(env)))),
        "bmc-helix" => Ok(ItsmConfig::BmcHelix(
            BmcConfig {
                url: https_url(env, "BMC_URL", "https://<tenant>-restapi.onbmc.com")?,
                fields: bmc_fields(env),
                timeout,
            },
            credentials(env, bmc_login)?,
        )),
        "jira" if dry_run => Ok(ItsmConfig::DryRun(DryRunFormat::Jira(
            super::jira::jira_fields(env, true)?,
        ))),
        "jira" => {
            let (config, auth) = super::jira::jira_config(env, timeout)?;
            Ok(ItsmConfig::Jira(config, auth))
        }
        other => Err(err(
            "ITSM_KIND",
            format!("{other:?} is not one of servicenow, bmc-helix, jira, dry-run"),
        )),
    }
}

/// One ITSM request's time limit; retries fit several into `ITSM_DEADLINE_MS`.
pub(super) fn attempt_timeout(env: &Env) -> Result<Duration, ConfigError> {
    let ms = env.number("ITSM_TIMEOUT_MS", 3000)?;
    Ok(Duration::from_millis(ms))
}

pub fn servicenow_fields(env: &Env) -> IncidentFields {
    IncidentFields {
        caller: env.get("SERVICENOW_CALLER"),
        assignment_group: env.get("SERVICENOW_ASSIGNMENT_GROUP"),
        category: env.get("SERVICENOW_CATEGORY"),
        close_code: env
            .get("SERVICENOW_CLOSE_CODE")
            .unwrap_or_else(|| IncidentFields::default().close_code),
        close_notes: env.get("SERVICENOW_CLOSE_NOTES"),
    }
}

fn servicenow_credentials(env: &Env) -> Result<Credentials, ConfigError> {
    let parts = Parts {
        username: env.get("SERVICENOW_USERNAME"),
        password: env.get("SERVICENOW_PASSWORD"),
        client_id: env.get("SERVICENOW_CLIENT_ID"),
        client_secret: env.get("SERVICENOW_CLIENT_SECRET"),
    };
    Credentials::build(env.get("SERVICENOW_AUTH").as_deref(), parts).map_err(|(part, problem)| {
        let var = match part {
            "username" => "SERVICENOW_USERNAME",
            "password" => "SERVICENOW_PASSWORD",
            "client_id" => "SERVICENOW_CLIENT_ID",
            "client_secret" => "SERVICENOW_CLIENT_SECRET",
            _ => "SERVICENOW_AUTH",
        };
        err(var, format!("{problem} (or set ITSM_SECRET_ID)"))
    })
}

pub fn bmc_fields(env: &Env) -> BmcFields {
    let d = BmcFields::default();
    BmcFields {
        first_name: env.get("BMC_FIRST_NAME"),
        last_name: env.get("BMC_LAST_NAME"),
        company: env.get("BMC_COMPANY"),
        support_company: env.get("BMC_SUPPORT_COMPANY"),
        support_organization: env.get("BMC_SUPPORT_ORGANIZATION"),
        assigned_group: env.get("BMC_ASSIGNED_GROUP"),
        status: env.get("BMC_STATUS").unwrap_or(d.status),
        reported_source: env.get("BMC_REPORTED_SOURCE").unwrap_or(d.reported_source),
        service_type: env.get("BMC_SERVICE_TYPE").unwrap_or(d.service_type),
        correlation_field: env
            .get("BMC_CORRELATION_FIELD")
            .unwrap_or(d.correlation_field),
        status_reason: env.get("BMC_STATUS_REASON").unwrap_or(d.status_reason),
    }
}

fn bmc_login(env: &Env) -> Result<BmcLogin, ConfigError> {
    let hint = "is required for BMC Helix (or set ITSM_SECRET_ID)";
    Ok(BmcLogin {
        username: env.required("BMC_USERNAME", hint)?,
        password: env.required("BMC_PASSWORD", hint)?,
    })
}
