//! BMC Helix ITSM client: AR-JWT login kept per container, incidents through
//! the HPD:IncidentInterface forms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{LOCATION, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::format::{BmcFields, BmcFormat, CREATE_FORM};
use crate::adapters::itsm_http::{HttpClientError, describe, failure, unanswered};
use crate::adapters::secrets::{CredentialSource, SecretError};
use crate::adapters::wire::{ItsmRequest, PathId, RequestLog, checked_key};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};

#[derive(Clone, PartialEq, Eq)]
pub struct BmcLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BmcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BmcLogin({}, ***)", self.username)
    }
}

impl BmcLogin {
    /// The secret's JSON: `{"username","password"}`.
    pub fn from_secret(v: &Value) -> Result<BmcLogin, SecretError> {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        match (get("username"), get("password")) {
            (Some(username), Some(password)) => Ok(BmcLogin { username, password }),
            _ => Err(SecretError::Incomplete(
                "the ITSM secret needs username and password for BMC Helix".into(),
            )),
        }
    }
}

mod changes;

#[derive(Debug, Clone)]
pub struct BmcConfig {
    /// The REST endpoint, e.g. `https://<tenant>-restapi.onbmc.com`.
    pub url: Url,
    pub fields: BmcFields,
    pub timeout: Duration,
}

/// AR-JWT tokens live an hour by default; renew before that.
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);
const CREDENTIALS: &str = "BMC_USERNAME and BMC_PASSWORD, or the ITSM secret";

pub struct BmcClient {
    http: reqwest::Client,
    base: Url,
    format: BmcFormat,
    login: CredentialSource<BmcLogin>,
    token: Mutex<Option<(String, Instant)>>,
    log: Option<Arc<RequestLog>>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: Value,
}

/// `[{"messageType","messageText","messageAppendedText","messageNumber"}]` → one line.
fn error_message(body: &Value) -> Option<String> {
    let items = body.as_array()?;
    let parts: Vec<String> = items
        .iter()
        .map(|m| {
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
            let number = m
                .get("messageNumber")
                .map_or(String::new(), |n| format!(" {n}"));
            let appended = text("messageAppendedText");
            let appended = if appended.is_empty() {
                String::new()
            } else {
                format!(" ({appended})")
            };
            format!(
                "{}{number}: {}{appended}",
                text("messageType"),
                text("messageText")
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

impl BmcClient {
    /// The HPD:IncidentInterface entry of `incident` (its Request ID and Status).
    async fn lookup(&self, incident: &IncidentRef) -> Result<Option<Value>, ItsmError> {
        let answer = self
            .send(self.format.lookup_request(safe(&incident.number)?))
            .await?;
        Ok(entries(&answer.body)
            .into_iter()
            .find(|e| value(e, "Incident Number").as_deref() == Some(incident.number.as_str())))
    }
}

/// A value put between double quotes in a qualification must hold none.
fn safe(value: &str) -> Result<&str, ItsmError> {
    if value.is_empty() || value.contains('"') || value.contains('\'') {
        return Err(ItsmError::Rejected {
            status: 0,
            message: format!("refusing to query BMC with {value:?}"),
        });
    }
    Ok(value)
}

/// The `Request ID` of an interface entry, which the update goes to: an
/// entry without one, or with one that is not an id, is refused.
fn request_id(entry: &Value) -> Result<PathId, ItsmError> {
    let id = entry["values"]["Request ID"].as_str().unwrap_or_default();
    PathId::new("BMC Helix", id)
}

fn entries(body: &Value) -> Vec<Value> {
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn value(entry: &Value, field: &str) -> Option<String> {
    entry["values"]
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl BmcClient {
    pub fn new(
        config: BmcConfig,
        login: CredentialSource<BmcLogin>,
        log: Option<Arc<RequestLog>>,
    ) -> Result<BmcClient, HttpClientError> {
        let http = crate::adapters::itsm_http::client(config.timeout)?;
        Ok(BmcClient {
            http,
            base: config.url,
            format: BmcFormat {
                fields: config.fields,
            },
            login,
            token: Mutex::new(None),
            log,
        })
    }

    /// The id of the entry a create's `Location` names. The URL is not
    /// followed: only an id of the create form on the configured host is
    /// taken, and the request is rebuilt on the configured base from it.
    fn created_id(&self, location: &str) -> Result<PathId, ItsmError> {
        let refuse = |why: &str| ItsmError::Rejected {
            status: 0,
            message: format!(
                "BMC answered the create with Location {location:?}: {why}; not followed"
            ),
        };
        let url = self.base.join(location).map_err(|_| refuse("not a URL"))?;
        if url.origin() != self.base.origin() {
            return Err(refuse("another scheme, host or port than BMC_URL"));
        }
        let prefix = format!("/api/arsys/v1/entry/{CREATE_FORM}/");
        let raw = url
            .path()
            .strip_prefix(&prefix)
            .ok_or_else(|| refuse("not an entry of the create form"))?;
        let id = url::form_urlencoded::parse(format!("id={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        PathId::new("BMC Helix", &id).map_err(|_| refuse("not an entry id"))
    }

    /// One token per container, renewed before it expires or after a 401.
    async fn token(&self) -> Result<String, ItsmError> {
        let mut cached = self.token.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let login = self.login.get(false).await?;
        let url = self.base.join("/api/jwt/login").expect("static path joins");
        let resp = self
            .http
            .post(url)
            .form(&[
                ("username", login.username.as_str()),
                ("password", login.password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| ItsmError::Unavailable(format!("BMC login: {}", describe(&e))))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| unanswered(&e))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str(&text)
                .ok()
                .and_then(|b| error_message(&b))
                .unwrap_or(format!("HTTP {status}"));
            // A refused login is a credentials problem whatever the status.
            let status = if status == 400 || status == 403 {
                401
            } else {
                status
            };
            return Err(failure("BMC Helix", status, message, None, CREDENTIALS));
        }
        let token = text.trim().to_string();
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    async fn send(&self, req: ItsmRequest) -> Result<Answer, ItsmError> {
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let rb = crate::adapters::itsm_http::request(&self.http, &self.base, &req)?
                .header("authorization", format!("AR-JWT {}", self.token().await?));
            let resp = rb.send().await.map_err(|e| unanswered(&e))?;
            // Tokens expire; a rotated secret needs reading again.
            if resp.status().as_u16() == 401 && attempt == 1 {
                *self.token.lock().await = None;
                if self.login.can_refresh() {
                    self.login.get(true).await?;
                }
                continue;
            }
            break resp;
        };
        if let Some(log) = &self.log {
            log.push(req);
        }
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (location, retry_after) = (header(LOCATION), header(RETRY_AFTER));
        let text = resp.text().await.map_err(|e| unanswered(&e))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if (200..300).contains(&status) || status == 404 {
            return Ok(Answer {
                status,
                location,
                body,
            });
        }
        let message = error_message(&body).unwrap_or_else(|| format!("HTTP {status}"));
        Err(failure(
            "BMC Helix",
            status,
            message,
            retry_after.as_deref(),
            CREDENTIALS,
        ))
    }
}

#[async_trait]
impl ItsmClient for BmcClient {
    fn kind(&self) -> &'static str {
        "bmc-helix"
    }

    /// AR System documents no server-side limit for a REST request it keeps
    /// working on after its client left; the same minute as ServiceNow's
    /// quota, plus a margin (`ITSM_CREATE_SETTLE_SECS` overrides it).
    fn create_settle_secs(&self) -> i64 {
        65
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        crate::adapters::wire::no_parent(self.kind(), draft)?;
        let answer = self.send(self.format.create_request(draft)).await?;
        if answer.status == 404 {
            return Err(ItsmError::Rejected {
                status: 404,
                message: "BMC has no HPD:IncidentInterface_Create form at this URL: check BMC_URL"
                    .into(),
            });
        }
        let mut number = value(&answer.body, "Incident Number");
        // Newer releases answer 201 with only a Location: read the entry there.
        if number.is_none()
            && let Some(location) = answer.location
        {
            let id = self.created_id(&location)?;
            number = value(
                &self.send(self.format.read_created(&id)).await?.body,
                "Incident Number",
            );
        }
        let number = number.ok_or_else(|| {
            ItsmError::Unanswered("BMC's create answer carries no Incident Number".into())
        })?;
        Ok(IncidentRef {
            id: number.clone(),
            number,
        })
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        let answer = self
            .send(self.format.find_request(checked_key(correlation_key)?))
            .await?;
        let field = &self.format.fields.correlation_field;
        Ok(entries(&answer.body)
            .iter()
            .filter(|e| value(e, field).as_deref() == Some(correlation_key))
            .find_map(|e| value(e, "Incident Number"))
            .map(|number| IncidentRef {
                id: number.clone(),
                number,
            }))
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        let entry = self
            .lookup(incident)
            .await?
            .ok_or_else(|| ItsmError::Rejected {
                status: 404,
                message: format!("BMC has no incident {}", incident.number),
            })?;
        self.send(self.format.reopen_request(&request_id(&entry)?))
            .await?;
        self.note(incident, note).await
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        let entry = self.lookup(i).await?.ok_or_else(|| ItsmError::Rejected {
            status: 404,
            message: format!("BMC has no incident {}", i.number),
        })?;
        self.send(
            self.format
                .priority_request(&request_id(&entry)?, impact, urgency),
        )
        .await?;
        Ok(())
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.send(self.format.work_log_request(safe(&incident.number)?, note))
            .await?;
        Ok(())
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        let Some(entry) = self.lookup(incident).await? else {
            return Ok(ResolveOutcome::NotFound);
        };
        if matches!(
            value(&entry, "Status").as_deref(),
            Some("Resolved" | "Closed" | "Cancelled")
        ) {
            // A person got there first: nothing to change.
            return Ok(ResolveOutcome::AlreadyClosed);
        }
        let answer = self
            .send(
                self.format
                    .resolve_request(&request_id(&entry)?, resolution),
            )
            .await?;
        Ok(if answer.status == 404 {
            ResolveOutcome::NotFound
        } else {
            ResolveOutcome::Resolved
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_arrays_read_as_one_line() {
        let body = json!([{"messageType": "ERROR", "messageText": "Required field cannot be blank.",
                           "messageAppendedText": "HPD:Help Desk : Last Name", "messageNumber": 326}]);
        assert_eq!(
            error_message(&body).unwrap(),
            "ERROR 326: Required field cannot be blank. (HPD:Help Desk : Last Name)"
        );
        assert_eq!(error_message(&json!({})), None);
    }

    #[test]
    fn secrets_need_both_parts() {
        assert!(BmcLogin::from_secret(&json!({"username": "u", "password": "p"})).is_ok());
        let err = BmcLogin::from_secret(&json!({"username": "u", "pass": "hunter2"})).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
