//! Azure Monitor's Alerts Management REST API, for the sync role:
//! `POST {alertId}/changestate?api-version=…&newState=…` with
//! `{"comments": "…"}`, and `GET {alertId}?api-version=…` for the state.
//! The alert id is the resource id Azure sends as `essentials.alertId`.

mod dryrun;
mod token;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde_json::{Value, json};
use url::Url;

pub use self::dryrun::AzureDryRun;
pub use self::token::{AppToken, AzureCredential, Certificate};
use crate::adapters::itsm_http::{HttpClientError, describe};
use crate::adapters::secrets::CredentialSource;
use crate::domain::ports::{AlertState, AlertStates, AzureError};

/// The Alerts Management version used: the newest that takes a comment
/// with the change (the stable 2019-03-01 takes none).
pub const DEFAULT_API_VERSION: &str = "2019-05-05-preview";

#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// `AZURE_AUTHORITY_HOST`, e.g. `https://login.microsoftonline.com/`.
    pub authority: Url,
    /// `AZURE_RESOURCE_MANAGER_URL`, e.g. `https://management.azure.com/`.
    pub resource_manager: Url,
    pub api_version: String,
    pub timeout: Duration,
}

pub struct AzureAlerts {
    http: reqwest::Client,
    base: Url,
    api_version: String,
    token: AppToken,
}

impl AzureAlerts {
    pub fn new(
        config: &AzureConfig,
        credential: CredentialSource<AzureCredential>,
    ) -> Result<AzureAlerts, HttpClientError> {
        let http = crate::adapters::itsm_http::client(config.timeout)?;
        let token = AppToken::new(
            http.clone(),
            &config.authority,
            &config.tenant_id,
            &config.client_id,
            &config.resource_manager,
            credential,
        )
        .expect("the configuration checked both URLs");
        Ok(AzureAlerts {
            http,
            base: config.resource_manager.clone(),
            api_version: config.api_version.clone(),
            token,
        })
    }

    async fn send(&self, method: reqwest::Method, url: Url, body: Option<Value>) -> Answer {
        let mut retried = false;
        loop {
            let token = self.token.get().await?;
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, format!("Bearer {token}"));
            if let Some(body) = &body {
                rb = rb.json(body);
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| AzureError::Unavailable(describe(&e)))?;
            let status = resp.status().as_u16();
            // A token revoked early: one more try with a new one.
            if status == 401 && !retried {
                retried = true;
                self.token.forget().await;
                continue;
            }
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs);
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return match status {
                200..=299 => Ok(body),
                _ => Err(classify(status, retry_after, &body, &self.api_version)),
            };
        }
    }
}

/// Resource Manager's answer, by what it means for the round: this alert
/// settled (404, 400, 405, 409, 422), everyone held until a person acts
/// (401, 403, a request form it refuses for every alert), or later (408,
/// 429, 5xx).
fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &Value,
    api_version: &str,
) -> AzureError {
    let message = arm_message(body);
    // Refusals that name the request's form, not the alert: every alert
    // would be refused alike, so they halt like a missing role.
    let code = body["error"]["code"].as_str().unwrap_or("");
    if matches!(
        code,
        "InvalidApiVersionParameter" | "NoRegisteredProviderFound" | "MissingApiVersionParameter"
    ) {
        return AzureError::Denied(format!(
            "Resource Manager refused the API version {api_version:?} (HTTP {status}, {message}); \
             set AZURE_ALERTS_API_VERSION to one it lists"
        ));
    }
    if code == "MissingSubscriptionRegistration" {
        return AzureError::Denied(format!(
            "Resource Manager answered HTTP {status} ({message}); register the \
             Microsoft.AlertsManagement resource provider in the alerts' subscription"
        ));
    }
    match status {
        404 | 410 => AzureError::NotFound,
        429 => AzureError::Throttled { retry_after },
        401 | 403 => AzureError::Denied(format!(
            "Resource Manager answered HTTP {status} ({message}); the app registration needs \
             Microsoft.AlertsManagement/alerts/changestate/action and alerts/read \
             (Monitoring Contributor) on the alerts' subscriptions"
        )),
        400 | 405 | 409 | 422 => AzureError::Rejected { status, message },
        408 => AzureError::Unavailable(format!("Resource Manager answered HTTP 408: {message}")),
        s if s >= 500 => {
            AzureError::Unavailable(format!("Resource Manager answered HTTP {s}: {message}"))
        }
        // 406, 411, 413, 415…: the request's form, the same for every alert.
        s => AzureError::Denied(format!(
            "Resource Manager answered HTTP {s} ({message}) to a change-state request; \
             check AZURE_RESOURCE_MANAGER_URL and AZURE_ALERTS_API_VERSION"
        )),
    }
}

type Answer = Result<Value, AzureError>;

/// `{"error":{"code","message"}}` → "code: message".
fn arm_message(body: &Value) -> String {
    let e = &body["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => "no error body".into(),
    }
}

/// The URL of `alert_id` (a resource id) under Resource Manager, or
/// `NotAnAlert`: only Alerts Management alert ids (never a budget alert's
/// `Microsoft.CostManagement/alerts/…` or a rule id), never another host.
pub fn alert_url(
    base: &Url,
    alert_id: &str,
    suffix: &str,
    query: &[(&str, &str)],
) -> Result<Url, AzureError> {
    let safe = alert_id.starts_with("/subscriptions/")
        && alert_id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.alertsmanagement/alerts/")
        && !alert_id.contains("//")
        && !alert_id.contains("..")
        && alert_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    if !safe {
        return Err(AzureError::NotAnAlert(format!("{alert_id:?}")));
    }
    let mut url = base
        .join(&format!("{}{suffix}", alert_id.trim_start_matches('/')))
        .map_err(|e| AzureError::NotAnAlert(format!("{alert_id:?}: {e}")))?;
    url.query_pairs_mut().extend_pairs(query);
    if url.origin() != base.origin() {
        return Err(AzureError::NotAnAlert(format!(
            "{alert_id:?} leads to another host; the Azure token goes only to Resource Manager"
        )));
    }
    Ok(url)
}

#[async_trait]
impl AlertStates for AzureAlerts {
    async fn current(&self, alert_id: &str) -> Result<AlertState, AzureError> {
        let url = alert_url(
            &self.base,
            alert_id,
            "",
            &[("api-version", &self.api_version)],
        )?;
        let body = self.send(reqwest::Method::GET, url, None).await?;
        match body["properties"]["essentials"]["alertState"].as_str() {
            Some("Closed") => Ok(AlertState::Closed),
            Some("Acknowledged") => Ok(AlertState::Acknowledged),
            Some(_) => Ok(AlertState::New),
            None => Err(AzureError::Unavailable(
                "Azure answered an alert without essentials.alertState".into(),
            )),
        }
    }

    async fn change(
        &self,
        alert_id: &str,
        state: AlertState,
        comment: &str,
    ) -> Result<(), AzureError> {
        let url = change_url(&self.base, alert_id, state, &self.api_version)?;
        self.send(
            reqwest::Method::POST,
            url,
            Some(json!({ "comments": comment })),
        )
        .await
        .map(drop)
    }
}

pub(crate) fn change_url(
    base: &Url,
    alert_id: &str,
    state: AlertState,
    api_version: &str,
) -> Result<Url, AzureError> {
    alert_url(
        base,
        alert_id,
        "/changestate",
        &[("api-version", api_version), ("newState", state.as_str())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alert_ids_on_the_configured_host() {
        let base = Url::parse("https://management.azure.com/").unwrap();
        let id = "/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.AlertsManagement/alerts/0b8e6c3d-1f2a-4b5c-9d8e-7f6a5b4c3d2e";
        let url = change_url(&base, id, AlertState::Closed, DEFAULT_API_VERSION).unwrap();
        assert_eq!(
            url.as_str(),
            format!(
                "https://management.azure.com{id}/changestate?api-version=2019-05-05-preview&newState=Closed"
            )
        );
        for bad in [
            "//evil.example/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/a",
            "/subscriptions/x/../../evil/providers/Microsoft.AlertsManagement/alerts/a",
            "/subscriptions/x/providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/a?x=1",
            "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/a%2F..",
        ] {
            assert!(
                change_url(&base, bad, AlertState::Closed, "v").is_err(),
                "{bad}"
            );
        }
    }

    /// Microsoft's published payloads: budget alerts carry Cost
    /// Management's id and the test action group's activity log alert its
    /// rule's id; every other kind an Alerts Management alert id.
    #[test]
    fn the_samples_ids_alerts_management_does_not_take_are_named() {
        let base = Url::parse("https://management.azure.com/").unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure-samples");
        let mut refused = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let body: Value = match std::fs::read(&path) {
                Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                Err(_) => continue,
            };
            // Skips fragments, and the docs' `<subscription ID>` placeholders.
            let Some(id) = body["data"]["essentials"]["alertId"].as_str() else {
                continue;
            };
            if id.contains('<') {
                continue;
            }
            let service = body["data"]["essentials"]["monitoringService"].clone();
            match change_url(&base, id, AlertState::Closed, DEFAULT_API_VERSION) {
                Ok(_) => assert!(id.contains("/providers/Microsoft.AlertsManagement/alerts/")),
                Err(AzureError::NotAnAlert(m)) => {
                    assert!(m.contains(id), "{m}");
                    refused.push(service.as_str().unwrap_or_default().to_string());
                }
                Err(e) => panic!("{id}: {e}"),
            }
        }
        refused.sort();
        refused.dedup();
        assert_eq!(refused, ["Activity Log - Administrative", "CostAlerts"]);
    }

    #[test]
    fn resource_managers_answers_settle_the_alert_halt_or_wait() {
        let arm = |code: &str| json!({"error": {"code": code, "message": "m"}});
        let v = DEFAULT_API_VERSION;
        let kind = |status, code: &str| match classify(status, None, &arm(code), v) {
            AzureError::NotFound => "gone",
            e if e.is_final_for_the_alert() => "skip",
            AzureError::Denied(_) => "halt",
            AzureError::Throttled { .. } | AzureError::Unavailable(_) => "later",
            AzureError::NotAnAlert(_) | AzureError::Rejected { .. } => unreachable!(),
        };
        for (status, code, expected) in [
            (404, "ResourceNotFound", "gone"),
            (400, "BadRequest", "skip"),
            (405, "MethodNotAllowed", "skip"),
            (409, "Conflict", "skip"),
            (422, "UnprocessableEntity", "skip"),
            (403, "AuthorizationFailed", "halt"),
            (400, "InvalidApiVersionParameter", "halt"),
            (400, "NoRegisteredProviderFound", "halt"),
            (409, "MissingSubscriptionRegistration", "halt"),
            (415, "UnsupportedMediaType", "halt"),
            (408, "RequestTimeout", "later"),
            (429, "TooManyRequests", "later"),
            (500, "InternalServerError", "later"),
            (503, "ServiceUnavailable", "later"),
        ] {
            assert_eq!(kind(status, code), expected, "{status} {code}");
        }
        let AzureError::Denied(m) = classify(400, None, &arm("InvalidApiVersionParameter"), v)
        else {
            unreachable!()
        };
        assert!(
            m.contains("AZURE_ALERTS_API_VERSION") && m.contains(v),
            "{m}"
        );
    }
}
