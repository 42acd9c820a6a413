//! ServiceNow Table API client (reqwest + rustls). Built once per container;
//! its connection pool is reused across warm invocations.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use url::Url;

use super::auth::{Authenticator, Credentials};
use super::format::{IncidentFields, ServiceNowFormat, sys_id};
use crate::adapters::itsm_http::{HttpClientError, Raw, failure, read_raw, unanswered};
use crate::adapters::secrets::CredentialSource;
use crate::adapters::wire::{ItsmRequest, RequestLog, WireFormat, checked_id, checked_key};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};

mod changes;

#[derive(Debug, Clone)]
pub struct ServiceNowConfig {
    pub instance_url: Url,
    pub fields: IncidentFields,
    /// Per request; keep the total well under Azure's ~10 s wait.
    pub timeout: Duration,
}

pub struct ServiceNowClient {
    http: reqwest::Client,
    base: Url,
    auth: Authenticator,
    format: ServiceNowFormat,
    log: Option<Arc<RequestLog>>,
}

impl ServiceNowClient {
    async fn update(&self, incident: &IncidentRef, request: ItsmRequest) -> Result<(), ItsmError> {
        let answer = self.send(request).await?;
        if answer.status == 404 {
            return Err(ItsmError::Rejected {
                status: 404,
                message: format!("ServiceNow has no incident {}", incident.number),
            });
        }
        Ok(())
    }
}

struct Answer {
    status: u16,
    body: Value,
}

impl ServiceNowClient {
    pub fn new(
        config: ServiceNowConfig,
        credentials: CredentialSource<Credentials>,
        log: Option<Arc<RequestLog>>,
    ) -> Result<ServiceNowClient, HttpClientError> {
        let http = crate::adapters::itsm_http::client(config.timeout)?;
        Ok(ServiceNowClient {
            auth: Authenticator::new(credentials, &config.instance_url),
            http,
            base: config.instance_url,
            format: ServiceNowFormat {
                fields: config.fields,
            },
            log,
        })
    }

    async fn send(&self, req: ItsmRequest) -> Result<Answer, ItsmError> {
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let rb = crate::adapters::itsm_http::request(&self.http, &self.base, &req)?
                .header(ACCEPT, "application/json");
            let rb = self.auth.apply(&self.http, rb).await?;
            let resp = rb.send().await.map_err(|e| unanswered(&e))?;
            // A token can be revoked and a secret rotated: try once more.
            if resp.status().as_u16() == 401
                && attempt == 1
                && self.auth.after_unauthorized().await?
            {
                continue;
            }
            break read(resp).await;
        };
        if let Some(log) = &self.log {
            log.push(req);
        }
        answer
    }
}

/// Turns a ServiceNow answer into a JSON body or a clear error. 404 is
/// left to the caller, which knows what it means for its operation.
async fn read(resp: reqwest::Response) -> Result<Answer, ItsmError> {
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let Raw {
        status,
        retry_after,
        text,
    } = read_raw(resp).await?;
    let body: Option<Value> = serde_json::from_str(&text).ok();
    if (200..300).contains(&status) {
        return match body {
            Some(body) if is_json || body.get("result").is_some() => Ok(Answer { status, body }),
            _ => Err(ItsmError::Unavailable(format!(
                "ServiceNow answered HTTP {status} with {} instead of JSON; a hibernating developer \
                 instance does this until someone wakes it",
                if text.trim_start().starts_with('<') {
                    "an HTML page"
                } else {
                    "something else"
                }
            ))),
        };
    }
    if status == 404 {
        return Ok(Answer {
            status,
            body: body.unwrap_or(Value::Null),
        });
    }
    let message = body
        .as_ref()
        .map_or_else(|| format!("HTTP {status}"), envelope_message);
    Err(failure(
        "ServiceNow",
        status,
        message,
        retry_after.as_deref(),
        "SERVICENOW_USERNAME and SERVICENOW_PASSWORD, the OAuth client, or the ITSM secret",
    ))
}

/// `{"error":{"message","detail"},"status":"failure"}` → "message: detail".
fn envelope_message(body: &Value) -> String {
    let err = body.get("error").unwrap_or(&Value::Null);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    match err
        .get("detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        Some(detail) => format!("{message}: {detail}"),
        None => message.to_string(),
    }
}

fn field(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The incident in a record of an answer; its `sys_id` goes into request
/// paths later, so one that is not an id does not count.
fn incident(v: &Value) -> Option<IncidentRef> {
    let id = field(v, "sys_id").filter(|id| checked_id("ServiceNow", id).is_ok())?;
    Some(IncidentRef {
        id,
        number: field(v, "number")?,
    })
}

#[async_trait]
impl ItsmClient for ServiceNowClient {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    /// The instance finishes a request we gave up on within its "REST
    /// Table API request timeout" quota rule (60 s by default), or cancels it.
    fn create_settle_secs(&self) -> i64 {
        65
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        let answer = self.send(self.format.create(draft)).await?;
        if answer.status == 404 {
            return Err(ItsmError::Rejected {
                status: 404,
                message:
                    "ServiceNow has no incident table at this URL: check SERVICENOW_INSTANCE_URL"
                        .into(),
            });
        }
        incident(&answer.body["result"]).ok_or_else(|| {
            ItsmError::Unanswered("ServiceNow's create answer has no sys_id and number".into())
        })
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        checked_key(correlation_key)?;
        let answer = self.send(self.format.find(correlation_key)).await?;
        if answer.status == 404 {
            return Ok(None); // Table API v1 answers 404 when nothing matches.
        }
        let records = answer.body["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Check every record: an ignored query field would match everything.
        Ok(records
            .iter()
            .filter(|r| field(r, "correlation_id").as_deref() == Some(correlation_key))
            .find_map(incident))
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        let request = self.format.reopen_request(&sys_id(incident)?, note);
        self.update(incident, request).await
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        let request = self.format.note_request(&sys_id(incident)?, note);
        self.update(incident, request).await
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        let request = self.format.priority_request(&sys_id(i)?, impact, urgency);
        self.update(i, request).await
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        let id = sys_id(incident)?;
        match self
            .send(self.format.resolve_request(&id, resolution))
            .await
        {
            Ok(answer) if answer.status == 404 => Ok(ResolveOutcome::NotFound),
            Ok(_) => Ok(ResolveOutcome::Resolved),
            Err(ItsmError::Rejected {
                status: 403,
                message,
            }) => {
                // Closed incidents are read-only: if a person got there
                // first, there is nothing to do and nothing went wrong.
                let state = self.send(self.format.state_request(&id)).await?;
                if matches!(
                    field(&state.body["result"], "state").as_deref(),
                    Some("6" | "7" | "8")
                ) {
                    return Ok(ResolveOutcome::AlreadyClosed);
                }
                Err(ItsmError::Rejected {
                    status: 403,
                    message: format!(
                        "ServiceNow refused to resolve {} ({message}); resolving needs close_code and \
                         close_notes: set SERVICENOW_CLOSE_CODE to a close code your instance accepts, \
                         and give the integration user the itil role",
                        incident.number
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }
}
