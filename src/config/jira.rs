//! Jira Service Management settings (`ITSM_KIND=jira`).

use super::source::{CredentialsConfig, credentials, https_url};
use super::{ConfigError, Env, err};
use crate::adapters::jira::{Deployment, JiraAuth, JiraConfig, JiraFields, ResourceField};

/// The issue fields; `JIRA_PROJECT` is required unless `dry_run`.
pub fn jira_fields(env: &Env, dry_run: bool) -> Result<JiraFields, ConfigError> {
    let d = JiraFields::default();
    let project = match env.get("JIRA_PROJECT") {
        Some(p) => p,
        None if dry_run => d.project.clone(),
        None => {
            return Err(err(
                "JIRA_PROJECT",
                "is not set; set it to the project key (OPS, ITSM, …)",
            ));
        }
    };
    if !project
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(err(
            "JIRA_PROJECT",
            format!("{project:?} is not a project key"),
        ));
    }
    let priorities = match env.get("JIRA_PRIORITIES") {
        None => d.priorities.clone(),
        Some(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if names.is_empty() || names.len() > 5 {
                return Err(err(
                    "JIRA_PRIORITIES",
                    "give one to five priority names, highest first (Highest,High,Medium,Low,Lowest)",
                ));
            }
            names
        }
    };
    let resource = match env.get("JIRA_RESOURCE_FIELD").as_deref() {
        None | Some("label") => ResourceField::Label,
        Some("none") => ResourceField::None,
        Some("component") => ResourceField::Component,
        Some(f) if f.starts_with("customfield_") && f[12..].chars().all(|c| c.is_ascii_digit()) => {
            ResourceField::Custom(f.to_string())
        }
        Some(f) => {
            return Err(err(
                "JIRA_RESOURCE_FIELD",
                format!("{f:?} is not label, component, none or customfield_<number>"),
            ));
        }
    };
    let request_type = match (
        env.get("JIRA_REQUEST_TYPE_FIELD"),
        env.get("JIRA_REQUEST_TYPE"),
    ) {
        (Some(field), Some(value)) => Some((field, value)),
        (None, None) => None,
        _ => {
            return Err(err(
                "JIRA_REQUEST_TYPE",
                "set JIRA_REQUEST_TYPE_FIELD and JIRA_REQUEST_TYPE together",
            ));
        }
    };
    Ok(JiraFields {
        project,
        issue_type: env.get("JIRA_ISSUE_TYPE").unwrap_or(d.issue_type),
        priorities,
        resource,
        resolve_transition: env
            .get("JIRA_RESOLVE_TRANSITION")
            .unwrap_or(d.resolve_transition),
        reopen_transition: env
            .get("JIRA_REOPEN_TRANSITION")
            .unwrap_or(d.reopen_transition),
        resolution: env.get("JIRA_RESOLUTION").unwrap_or(d.resolution),
        request_type,
        deployment: match env.get("JIRA_DEPLOYMENT").as_deref() {
            Some("cloud") => Deployment::Cloud,
            Some("data-center") => Deployment::DataCenter,
            // A personal access token exists only on Data Center.
            None if env.get("JIRA_PAT").is_some() => Deployment::DataCenter,
            None => Deployment::Cloud,
            Some(other) => {
                return Err(err(
                    "JIRA_DEPLOYMENT",
                    format!("{other:?} is not cloud or data-center"),
                ));
            }
        },
    })
}

pub fn jira_config(
    env: &Env,
    timeout: std::time::Duration,
) -> Result<(JiraConfig, CredentialsConfig<JiraAuth>), ConfigError> {
    Ok((
        JiraConfig {
            url: https_url(env, "JIRA_URL", "https://<site>.atlassian.net")?,
            fields: jira_fields(env, false)?,
            timeout,
        },
        credentials(env, jira_auth)?,
    ))
}

fn jira_auth(env: &Env) -> Result<JiraAuth, ConfigError> {
    match (
        env.get("JIRA_EMAIL"),
        env.get("JIRA_API_TOKEN"),
        env.get("JIRA_PAT"),
    ) {
        (Some(email), Some(api_token), None) => Ok(JiraAuth::Cloud { email, api_token }),
        (None, None, Some(pat)) => Ok(JiraAuth::Pat(pat)),
        (None, None, None) => Err(err(
            "JIRA_API_TOKEN",
            "is not set; Jira Cloud needs JIRA_EMAIL and JIRA_API_TOKEN, Data Center JIRA_PAT \
             (or set ITSM_SECRET_ID)",
        )),
        _ => Err(err(
            "JIRA_PAT",
            "set JIRA_EMAIL and JIRA_API_TOKEN (Jira Cloud), or JIRA_PAT (Data Center), not both",
        )),
    }
}
