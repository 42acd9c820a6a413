//! Jira client: REST API v3 on Jira Cloud (email and API token) or Jira
//! Data Center (personal access token). Issues carry the correlation key
//! as a label; resolving walks a transition found by name, cached per status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::format::{JiraFields, JiraFormat, issue_key};
use crate::adapters::itsm_http::{HttpClientError, Raw, failure, read_raw, unanswered};
use crate::adapters::secrets::{CredentialSource, SecretError};
use crate::adapters::wire::{ItsmRequest, PathId, RequestLog, WireFormat, checked_id, checked_key};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};

mod changes;

#[derive(Clone, PartialEq, Eq)]
pub enum JiraAuth {
    /// Jira Cloud: the account's email and an API token (basic auth).
    Cloud { email: String, api_token: String },
    /// Jira Data Center: a personal access token (bearer).
    Pat(String),
}

impl std::fmt::Debug for JiraAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JiraAuth::Cloud { email, .. } => write!(f, "JiraAuth::Cloud({email}, ***)"),
            JiraAuth::Pat(_) => write!(f, "JiraAuth::Pat(***)"),
        }
    }
}

impl JiraAuth {
    /// The secret's JSON: `{"email","api_token"}` (Cloud) or `{"pat"}` (Data Center).
    pub fn from_secret(v: &Value) -> Result<JiraAuth, SecretError> {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        match (get("email"), get("api_token"), get("pat")) {
            (Some(email), Some(api_token), None) => Ok(JiraAuth::Cloud { email, api_token }),
            (None, None, Some(pat)) => Ok(JiraAuth::Pat(pat)),
            _ => Err(SecretError::Incomplete(
                "the ITSM secret needs email and api_token (Jira Cloud), or pat (Data Center)"
                    .into(),
            )),
        }
    }

    fn header(&self) -> String {
        use base64::Engine as _;
        match self {
            JiraAuth::Cloud { email, api_token } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{email}:{api_token}"))
            ),
            JiraAuth::Pat(pat) => format!("Bearer {pat}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JiraConfig {
    /// `https://<site>.atlassian.net`, or the Data Center base URL.
    pub url: Url,
    pub fields: JiraFields,
    pub timeout: Duration,
}

const CREDENTIALS: &str = "JIRA_EMAIL and JIRA_API_TOKEN (or JIRA_PAT), or the ITSM secret, \
                           and the account's permissions in the project";

/// Jira's search index lags its writes "from a few seconds to minutes"
/// (Atlassian, search after write): within this long of a create whose
/// answer was lost, an empty `find` proves nothing. The domain keeps that
/// fact in the correlation record, so that every process taking the alert
/// over honours it; `ITSM_CREATE_SETTLE_SECS` overrides it.
const INDEX_LAG_SECS: i64 = 180;

/// A transition found by name, valid from one status.
#[derive(Debug, Clone)]
struct Transition {
    id: String,
    /// Its screen has the resolution field (and wants it set).
    resolution: bool,
}

pub struct JiraClient {
    http: reqwest::Client,
    base: Url,
    format: JiraFormat,
    auth: CredentialSource<JiraAuth>,
    log: Option<Arc<RequestLog>>,
    /// (from status, transition name) → transition.
    transitions: Mutex<HashMap<(String, String), Transition>>,
}

struct Answer {
    status: u16,
    body: Value,
}

/// `{"errorMessages": [...], "errors": {"field": "message"}}` → one line
/// naming each field.
fn envelope(body: &Value) -> Option<String> {
    let mut parts: Vec<String> = body["errorMessages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if let Some(errors) = body["errors"].as_object() {
        parts.extend(
            errors
                .iter()
                .map(|(k, v)| format!("field {k}: {}", v.as_str().unwrap_or("invalid"))),
        );
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

impl JiraClient {
    pub fn new(
        config: JiraConfig,
        auth: CredentialSource<JiraAuth>,
        log: Option<Arc<RequestLog>>,
    ) -> Result<JiraClient, HttpClientError> {
        Ok(JiraClient {
            http: crate::adapters::itsm_http::client(config.timeout)?,
            base: config.url,
            format: JiraFormat {
                fields: config.fields,
            },
            auth,
            log,
            transitions: Mutex::default(),
        })
    }

    async fn send(&self, req: ItsmRequest) -> Result<Answer, ItsmError> {
        let mut fresh = false;
        loop {
            let auth = self.auth.get(fresh).await?;
            let resp = crate::adapters::itsm_http::request(&self.http, &self.base, &req)?
                .header(ACCEPT, "application/json")
                .header(AUTHORIZATION, auth.header())
                .send()
                .await
                .map_err(|e| unanswered(&e))?;
            let status = resp.status().as_u16();
            // A rotated token: read the secret once more.
            if status == 401 && !fresh && self.auth.can_refresh() {
                fresh = true;
                continue;
            }
            let Raw {
                retry_after, text, ..
            } = read_raw(resp).await?;
            if let Some(log) = &self.log {
                log.push(req.clone());
            }
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if (200..300).contains(&status) || status == 404 {
                return Ok(Answer { status, body });
            }
            let message = envelope(&body).unwrap_or_else(|| format!("HTTP {status}"));
            return Err(failure(
                "Jira",
                status,
                format!("Jira refused the request: {message}"),
                retry_after.as_deref(),
                CREDENTIALS,
            ));
        }
    }

    /// The issue's status name and whether it is in the done category;
    /// `None` when the issue does not exist.
    async fn status(&self, key: &PathId) -> Result<Option<(String, bool)>, ItsmError> {
        let answer = self.send(self.format.status_request(key)).await?;
        if answer.status == 404 {
            return Ok(None);
        }
        let status = &answer.body["fields"]["status"];
        let name = status["name"].as_str().unwrap_or("").to_string();
        let done = status["statusCategory"]["key"] == "done";
        Ok(Some((name, done)))
    }

    /// The transition called `name` (or leading to a status called so) from
    /// `status`, cached; `fresh` looks it up again.
    async fn transition(
        &self,
        issue: &PathId,
        status: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Transition, ItsmError> {
        let key = (status.to_string(), name.to_lowercase());
        if !fresh && let Some(t) = self.transitions.lock().await.get(&key) {
            return Ok(t.clone());
        }
        let answer = self.send(self.format.transitions_request(issue)).await?;
        let all = answer.body["transitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let matches = |t: &&Value, field: &Value| {
            field.as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))
                && t["id"]
                    .as_str()
                    .is_some_and(|id| checked_id("Jira", id).is_ok())
        };
        let found = all
            .iter()
            .find(|t| matches(t, &t["name"]))
            .or_else(|| all.iter().find(|t| matches(t, &t["to"]["name"])))
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().filter_map(|t| t["name"].as_str()).collect();
                ItsmError::Rejected {
                    status: 0,
                    message: format!(
                        "Jira offers no transition {name:?} from status {status:?} (it offers {names:?}); \
                         set JIRA_RESOLVE_TRANSITION or JIRA_REOPEN_TRANSITION to one of them"
                    ),
                }
            })?;
        let t = Transition {
            id: found["id"].as_str().unwrap_or_default().to_string(),
            resolution: found["fields"].get("resolution").is_some(),
        };
        self.transitions.lock().await.insert(key, t.clone());
        Ok(t)
    }

    /// Walks transition `name` with `comment`; a cached id Jira refuses (the
    /// workflow changed) is looked up again once.
    async fn walk(
        &self,
        issue: &PathId,
        status: &str,
        name: &str,
        resolution: Option<&str>,
        comment: &str,
    ) -> Result<u16, ItsmError> {
        let request = |t: &Transition| {
            self.format.transition_request(
                issue,
                &t.id,
                resolution.filter(|_| t.resolution),
                comment,
            )
        };
        let cached = self.transition(issue, status, name, false).await?;
        match self.send(request(&cached)).await {
            Err(ItsmError::Rejected { status: 400, .. }) => {
                let fresh = self.transition(issue, status, name, true).await?;
                self.send(request(&fresh)).await.map(|a| a.status)
            }
            other => other.map(|a| a.status),
        }
    }
}

#[async_trait]
impl ItsmClient for JiraClient {
    fn kind(&self) -> &'static str {
        "jira"
    }

    fn create_settle_secs(&self) -> i64 {
        INDEX_LAG_SECS
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        crate::adapters::wire::no_parent(self.kind(), draft)?;
        let sent = self.send(self.format.create(draft)).await;
        sent.and_then(|a| {
            let id = a.body["id"].as_str().map(str::to_string);
            let key = a.body["key"].as_str().map(str::to_string);
            match (id, key) {
                (Some(id), Some(key)) if checked_id("Jira", &key).is_ok() => {
                    Ok(IncidentRef { id, number: key })
                }
                _ => Err(ItsmError::Unanswered(format!(
                    "Jira answered HTTP {} without the new issue's id and key",
                    a.status
                ))),
            }
        })
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        let key = checked_key(correlation_key)?;
        let answer = self.send(self.format.find(key)).await?;
        let found = answer.body["issues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["fields"]["labels"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|l| l == key))
            })
            .and_then(|i| {
                let number = i["key"].as_str()?.to_string();
                checked_id("Jira", &number).ok()?;
                Some(IncidentRef {
                    id: i["id"].as_str().unwrap_or(&number).to_string(),
                    number,
                })
            });
        Ok(found)
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        let key = issue_key(incident)?;
        let Some((status, done)) = self.status(&key).await? else {
            return Ok(ResolveOutcome::NotFound);
        };
        if done {
            return Ok(ResolveOutcome::AlreadyClosed);
        }
        let f = &self.format.fields;
        let answered = self
            .walk(
                &key,
                &status,
                &f.resolve_transition,
                Some(&f.resolution),
                &resolution.notes,
            )
            .await?;
        Ok(if answered == 404 {
            ResolveOutcome::NotFound
        } else {
            ResolveOutcome::Resolved
        })
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        let key = issue_key(incident)?;
        let Some((status, _)) = self.status(&key).await? else {
            return Err(gone(incident));
        };
        let f = &self.format.fields;
        match self
            .walk(&key, &status, &f.reopen_transition, None, note)
            .await?
        {
            404 => Err(gone(incident)),
            _ => Ok(()),
        }
    }

    /// Jira's priority follows the impact (`JIRA_PRIORITIES`); without
    /// that setting issues keep the project's default and nothing is sent.
    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        _urgency: u8,
    ) -> Result<(), ItsmError> {
        let Some(request) = self.format.priority_request(&issue_key(i)?, impact) else {
            return Ok(());
        };
        if self.send(request).await?.status == 404 {
            return Err(gone(i));
        }
        Ok(())
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        let request = self.format.comment_request(&issue_key(incident)?, note);
        let answer = self.send(request).await?;
        if answer.status == 404 {
            return Err(gone(incident));
        }
        Ok(())
    }
}

fn gone(incident: &IncidentRef) -> ItsmError {
    ItsmError::Rejected {
        status: 404,
        message: format!("Jira has no issue {}", incident.number),
    }
}
